"""One seeded dataset landed through the real platform once per session, for the mart and serving tests.

4 days, >= 1,000 users and 200 products with mid-stream catalog and profile changes and 2% late events,
plus a few bad messages (BAD_MESSAGES: raw.dead_letter has rows for the operations models, well under the
dead-letter rate the raw checks allow), published to a real broker, ingested into Iceberg and built by dbt
through Dagster. Tests read the published DuckDB file and compare with values computed in polars from
``dataset``. A test that publishes builds of its own works on a copy (see ``tests/serving``): this home's
build must stay published.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Producer

from analytics_platform.contracts.envelope import encode_event, event_types
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
# Dead letters per topic (a topic's share must stay under PLATFORM_MAX_DEAD_LETTER_RATE, 1%, or the raw
# checks block the build). They carry no correlation id of the dataset, so no journey shows them.
BAD_MESSAGES = {"events.purchase": 3, "events.add_to_cart": 2, "events.user_visit": 1}


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
            create_topics(settings, settings.topic_partitions)
            dataset = generate_dataset(EVENTS, seed=SEED, days=DAYS, late_fraction=0.02)
            assert publish(dataset.events, settings, **producer_options(settings)) == len(dataset.events)
            send_bad_messages(settings, dataset)
            for event_type in event_types().values():
                ingest_until_caught_up(settings, event_type.topic)
            build_marts(settings)
            marts = current_build(settings)
            assert marts is not None
            yield LandedMarts(dataset, settings, marts)
        finally:
            embedded_broker.stop(settings)


def bad_messages(topic: str, like: dict, count: int) -> list[bytes | None]:
    """``count`` messages for ``topic`` that cannot land: not JSON, a tombstone, an event of another type."""
    wrong_type = dict(like, event_id=f"bad-{topic}", correlation_id=f"bad-{topic}", event_type="nonexistent")
    return [b"{not json", None, encode_event(wrong_type)][:count]


def send_bad_messages(settings: Settings, dataset: Dataset) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for topic, count in BAD_MESSAGES.items():
        like = next(event for event in dataset.events if f"events.{event['event_type']}" == topic)
        for value in bad_messages(topic, like, count):
            producer.produce(topic, value=value, partition=0)
    assert producer.flush(10) == 0
