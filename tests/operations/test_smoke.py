"""``analytics-platform smoke`` against a running platform: a broker, ingestion following every topic, and the
live follower publishing the per-minute facts, on top of a copy of the session's published marts.

Ingestion and the live refreshes run in threads of the test (the functions the Dagster runs call, without
a run launch per step), so the smoke test sees the path it sees under ``make dev`` in a fraction of the
time. The CLI runs as a process of its own, as an operator would run it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_tables
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.dbt import DBT_PROJECT_DIR, dbt_executable
from analytics_platform.warehouse.live import refresh_live_facts
from tests.helpers import landed
from tests.landed import LandedMarts

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "analytics-platform")
HOP = re.compile(r"^  (kafka|raw|marts)\s+(\d+\.\d) s  (.*)$", re.MULTILINE)


def run_dbt(args: list[str], target: Path) -> None:
    """dbt as the live follower's resource runs it: this environment's executable, the platform's profile."""
    subprocess.run(
        [
            dbt_executable(),
            *args,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target),
        ],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def looping(step: Callable[[], object], every_s: float, name: str) -> Iterator[list[BaseException]]:
    """``step`` in a thread every ``every_s`` until the block ends; yields the errors it raised (checked after)."""
    stop, errors = threading.Event(), []

    def loop() -> None:
        while not stop.is_set():
            try:
                step()
            except BaseException as error:  # reported by the test, not lost in the thread
                errors.append(error)
                return
            stop.wait(every_s)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(120)


@pytest.fixture
def platform(broker: Settings, landed_marts: LandedMarts) -> Settings:
    """This test's home: its own broker and raw tables, and the session's published marts copied in (the live
    follower copies the published build, so it needs one)."""
    shutil.copytree(landed_marts.settings.duckdb_path, broker.duckdb_path, symlinks=True)
    ensure_tables(load_catalog(broker), broker)
    return broker


def smoke(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLATFORM_HOME": str(settings.home), "PLATFORM_BROKER_PORT": str(settings.broker_port)}
    return subprocess.run([CLI, "smoke", *args], capture_output=True, text=True, env=env, timeout=180)


def test_smoke_times_each_hop_of_a_running_platform(platform: Settings) -> None:
    catalog = load_catalog(platform)

    def ingest() -> None:
        for topic in event_topics():
            ingest_until_caught_up(platform, topic, catalog=catalog)

    def follow_live() -> None:
        refresh_live_facts(run_dbt, platform, logging.getLogger("live"))

    with looping(ingest, 1.0, "ingestion") as ingest_errors, looping(follow_live, 1.0, "live") as live_errors:
        result = smoke(platform, "--timeout", "90")
    print(result.stdout)  # the hops' seconds, in the test log
    assert not ingest_errors and not live_errors, ingest_errors + live_errors
    assert result.returncode == 0, result.stdout + result.stderr
    hops = HOP.findall(result.stdout)
    assert [name for name, _, _ in hops] == ["kafka", "raw", "marts"], result.stdout
    seconds = [float(value) for _, value, _ in hops]
    assert seconds == sorted(seconds) and seconds[-1] < 90

    # Independently: the one event of raw.user_visit is the sample, where smoke said it landed ...
    [event] = landed(platform, "user_visit").to_pylist()
    assert (event["source"], event["user_id"]) == ("analytics-platform-smoke", "smoke")
    assert event["correlation_id"].startswith("smoke-")
    assert hops[1][2] == f"raw.user_visit, partition {event['kafka_partition']}, offset {event['kafka_offset']}"
    # ... and the published build's per-minute facts count exactly it in its minute (no other visit today).
    build = current_build(platform)
    assert build is not None
    minute = event["event_at"].astimezone(UTC).replace(second=0, microsecond=0)
    with duckdb.connect(str(build), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        rows = con.execute(
            "select event_count from marts.fct_events_per_minute where event_minute = ? and event_type = 'user_visit'",
            [minute],
        ).fetchall()
    assert rows == [(1,)]
    assert (
        hops[2][2]
        == f"build {build.parent.name}: fct_events_per_minute counts 1 user_visit event(s) at {minute:%H:%M} UTC"
    )


def test_smoke_names_the_hop_that_did_not_happen(platform: Settings) -> None:
    """Nothing ingests: the event reaches Kafka, and the command fails in time, naming the raw hop."""
    started = datetime.now(UTC)
    result = smoke(platform, "--timeout", "4")
    assert result.returncode == 1
    assert [name for name, _, _ in HOP.findall(result.stdout)] == ["kafka"]
    assert "error: raw: the sample event did not land in raw.user_visit within 4 s" in result.stderr
    assert "`ingest_user_visit_sensor`" in result.stderr and "docs/runbooks.md#raw-freshness" in result.stderr
    assert (datetime.now(UTC) - started).total_seconds() < 30
