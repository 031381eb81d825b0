"""The live follower keeps the per-minute facts at the latest raw snapshots between full marts builds."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.live import LIVE_JOB, live_facts_sensor
from analytics_platform.defs.transform.project import dbt_resource
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import build_marts
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import ACTIVITY_TYPES, DEFAULT_START, generate_events
from analytics_platform.warehouse import builds, connections
from analytics_platform.warehouse.live import catch_up_live_facts
from tests.helpers import produce, produce_events

pytestmark = pytest.mark.integration

Cell = tuple[datetime, str]


def expected_per_minute(events: list[dict[str, Any]]) -> Counter[Cell]:
    """Activity events per (minute, type), computed from what was produced (app errors have a mart of their own)."""
    minute = {"second": 0, "microsecond": 0}
    return Counter(
        (datetime.fromisoformat(event["timestamp"]).astimezone(UTC).replace(**minute), event["event_type"])
        for event in events
        if event["event_type"] in ACTIVITY_TYPES
    )


def per_minute(build: Any) -> Counter[Cell]:
    with duckdb.connect(str(build), read_only=True) as con:
        rows = con.execute("select event_minute, event_type, event_count from marts.fct_events_per_minute").fetchall()
    return Counter({(minute.astimezone(UTC), event_type): int(count) for minute, event_type, count in rows})


def rolling_15m(counts: Counter[Cell]) -> dict[Cell, int]:
    """Each cell's events of its type in its minute and the 14 before it, computed from the counts."""
    return {
        (minute, event_type): sum(counts[(minute - timedelta(minutes=back), event_type)] for back in range(15))
        for minute, event_type in counts
    }


def per_minute_rows(build: Any) -> dict[Cell, tuple[int, int, datetime]]:
    """(event count, rolling 15-minute count, built at) of each cell of the published per-minute fact."""
    with duckdb.connect(str(build), read_only=True) as con:
        rows = con.execute(
            "select event_minute, event_type, event_count, rolling_15m_count, built_at from marts.fct_events_per_minute"
        ).fetchall()
    return {(minute.astimezone(UTC), kind): (count, rolling, at) for minute, kind, count, rolling, at in rows}


def daily_active_users(build: Any) -> list[tuple]:
    with duckdb.connect(str(build), read_only=True) as con:
        return con.execute("select * exclude (built_at) from marts.fct_daily_active_users order by all").fetchall()


def ingest_all(settings: Settings) -> None:
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)


def land(settings: Settings, count: int, seed: int) -> list[dict[str, Any]]:
    events = produce(settings, count, seed=seed, days=1)
    ingest_all(settings)
    return events


def follow_once(settings: Settings) -> dg.ExecuteInProcessResult:
    run_config = {"ops": {"refresh_live_facts": {"config": {"follow_s": 0}}}}
    return (
        platform_definitions()
        .resolve_job_def(LIVE_JOB)
        .execute_in_process(run_config=run_config, instance=get_instance(settings))
    )


def sensor_requests(settings: Settings) -> int:
    with dg.build_sensor_context(
        instance=get_instance(settings), resources={"platform": PlatformResource()}
    ) as context:
        result = live_facts_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return len(result.run_requests or [])


def test_live_facts_follow_new_events_and_leave_the_other_marts_to_full_builds(broker: Settings) -> None:
    first = land(broker, 2_000, seed=1)
    build_marts(broker)
    built = connections.current_build(broker)
    assert per_minute(built) == expected_per_minute(first)
    assert sensor_requests(broker) == 0  # a full build leaves the live facts current: nothing to follow

    second = land(broker, 1_000, seed=2)
    assert sensor_requests(broker) == 1
    result = follow_once(broker)
    assert result.success
    live = connections.current_build(broker)
    assert live != built
    assert per_minute(live) == expected_per_minute(first + second)
    assert daily_active_users(live) == daily_active_users(built)  # not live: moves with the next full build
    days = {event["timestamp"][:10] for event in second}
    materializations = result.asset_materializations_for_node("refresh_live_facts")
    materialized = {(m.asset_key.path[-1], m.partition) for m in materializations if m.asset_key.path[0] == "marts"}
    assert {partition for _, partition in materialized} >= days
    assert {name for name, _ in materialized} == {
        "fct_events_per_minute",
        "fct_revenue_per_minute",
        "fct_errors_per_minute",
    }
    # ... and the refresh sent its new headline values to the metrics topic.
    (sent,) = [m for m in materializations if m.asset_key.path == ["serving", "metrics_latest"]]
    assert sent.metadata["sent"].value > 0
    assert sensor_requests(broker) == 0

    assert follow_once(broker).success
    assert connections.current_build(broker) == live  # nothing new landed: nothing published


def test_the_live_follower_waits_for_a_published_build_with_live_facts(broker: Settings) -> None:
    """The first full build publishes after each of its steps, and its snapshots step's build has none of the
    models the live facts read: a follower launched on it failed for good (the quick soak of 2026-12-04)."""
    land(broker, 500, seed=3)
    early = builds.prepare_build(broker, load_catalog(broker))  # raw views, no models: an early step's build
    builds.publish(broker, early)
    assert sensor_requests(broker) == 0
    build_marts(broker)
    assert sensor_requests(broker) == 0
    land(broker, 500, seed=4)
    assert sensor_requests(broker) == 1


def test_a_build_that_started_before_a_live_refresh_catches_up_before_publishing(broker: Settings) -> None:
    first = land(broker, 2_000, seed=1)
    build_marts(broker)
    started = builds.prepare_build(broker, load_catalog(broker))  # a full build copies the published file
    second = land(broker, 1_000, seed=2)
    assert follow_once(broker).success  # ... and the follower publishes newer live facts meanwhile
    assert per_minute(started) == expected_per_minute(first)

    def run_dbt(args: list[str], target: Path) -> None:
        dbt_resource().cli(args, target_path=target).wait()

    catch_up_live_facts(run_dbt, broker, started, logging.getLogger(__name__))
    assert per_minute(started) == expected_per_minute(first + second) == per_minute(connections.current_build(broker))


def test_a_live_refresh_recomputes_only_the_minutes_from_the_earliest_new_event(broker: Settings) -> None:
    """New rows from noon on leave the morning's per-minute facts as the full build wrote them, and the
    recomputed minutes (rolling counts reaching back across that boundary included) equal what the
    produced events give."""
    first = generate_events(2_000, seed=1, days=1, start=DEFAULT_START)
    produce_events(broker, first)
    ingest_all(broker)
    build_marts(broker)
    before = per_minute_rows(connections.current_build(broker))

    second = generate_events(600, seed=2, days=1, start=DEFAULT_START + timedelta(hours=12))  # noon to noon
    produce_events(broker, second)
    ingest_all(broker)
    assert follow_once(broker).success
    after = per_minute_rows(connections.current_build(broker))

    counts = expected_per_minute(first + second)
    rolling = rolling_15m(counts)
    assert {cell: (count, rolling_count) for cell, (count, rolling_count, _) in after.items()} == {
        cell: (counts[cell], rolling[cell]) for cell in counts
    }
    earliest_new = min(expected_per_minute(second))[0]
    kept = {cell: row for cell, row in after.items() if cell[0] < earliest_new}
    assert kept == {cell: row for cell, row in before.items() if cell[0] < earliest_new}
    assert len(kept) > 100  # the morning: untouched, built_at included
    rebuilt_at = {row[2] for cell, row in after.items() if cell[0] >= earliest_new}
    assert min(rebuilt_at) > max(row[2] for row in before.values())
