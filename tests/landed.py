"""One seeded dataset landed through the real platform once per session, for the mart and serving tests.

4 days, >= 1,000 users and 200 products with mid-stream catalog and profile changes and 2% late events,
published to a real broker, ingested into Iceberg and built by dbt through Dagster. Tests read the
published DuckDB file and compare with values computed in polars from ``dataset``. A test that publishes
builds of its own works on a copy (see ``tests/serving``): this home's build must stay published.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.producer import producer_options, publish
from analytics_platform.local.orchestration import build_marts
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import Dataset, generate_dataset
from analytics_platform.warehouse.connections import current_build
from tests.helpers import free_port

EVENTS, DAYS, SEED = 44_000, 4, 2026


@dataclass(frozen=True)
class LandedMarts:
    dataset: Dataset
    settings: Settings
    marts: Path

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.marts), read_only=True) as con:
            return con.execute(sql).fetchall()


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("PLATFORM_") or n == "DAGSTER_HOME"]:
        del os.environ[name]
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def landed_marts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LandedMarts]:
    home = tmp_path_factory.mktemp("marts") / "platform"
    variables = {
        "PLATFORM_HOME": str(home),
        "PLATFORM_BROKER_PORT": str(free_port()),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    with environment(variables):
        settings = get_settings()
        embedded_broker.start(settings)
        try:
            create_topics(settings.bootstrap_servers, settings.topic_partitions)
            dataset = generate_dataset(EVENTS, seed=SEED, days=DAYS, late_fraction=0.02)
            assert publish(dataset.events, settings.bootstrap_servers, **producer_options(settings)) == len(
                dataset.events
            )
            for event_type in event_types().values():
                ingest_until_caught_up(settings, event_type.topic)
            build_marts(settings)
            marts = current_build(settings)
            assert marts is not None
            yield LandedMarts(dataset, settings, marts)
        finally:
            embedded_broker.stop(settings)
