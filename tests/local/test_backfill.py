"""Daily partitions: late events reach only the days a backfill rebuilds, with the right values."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.schedules import daily_marts_yesterday
from analytics_platform.defs.transform.sensors import MARTS_SENSOR, SENSOR_TAG
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka.producer import producer_options, publish
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import build_marts
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import generate_dataset
from analytics_platform.warehouse.connections import connect_marts
from analytics_platform.warehouse.refresh import DAYS_TAG, REFRESH_JOB

pytestmark = pytest.mark.integration

ACTIVITY = ("user_visit", "add_to_cart", "checkout", "purchase")


def ingest_all(settings: Settings) -> None:
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)


def hourly(settings: Settings) -> dict[tuple[str, datetime, str], tuple[int, datetime]]:
    """(day, hour, event_type) -> (event_count, built_at) from marts.fct_events_per_hour."""
    with connect_marts(settings) as marts:
        rows = marts.execute(
            "select event_hour, event_type, event_count, built_at from marts.fct_events_per_hour"
        ).fetchall()
    return {(hour.astimezone(UTC).date().isoformat(), hour, kind): (count, built) for hour, kind, count, built in rows}


def evaluate_marts_sensor(settings: Settings, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=get_instance(settings), cursor=cursor, resources={"platform": PlatformResource()}
    ) as context:
        result = platform_definitions().resolve_sensor_def(MARTS_SENSOR)(context)
    assert isinstance(result, dg.SensorResult)
    return result


def sensor_built_once(settings: Settings) -> str | None:
    """Let the marts sensor request a build and record that run as done; returns the sensor's cursor then."""
    first = evaluate_marts_sensor(settings, None)
    request = (first.run_requests or [])[0]
    job = platform_definitions().resolve_job_def(request.job_name or REFRESH_JOB)
    tags = {**request.tags, SENSOR_TAG: MARTS_SENSOR, "dagster/run_key": request.run_key or ""}
    get_instance(settings).create_run_for_job(job, tags=tags, status=dg.DagsterRunStatus.SUCCESS)
    return evaluate_marts_sensor(settings, first.cursor).cursor


def expected_hourly(events: list[dict]) -> Counter[tuple[str, str, str]]:
    return Counter(
        (e["timestamp"][:10], e["timestamp"][:13], e["event_type"]) for e in events if e["event_type"] in ACTIVITY
    )


def test_backfill_after_late_events_rebuilds_exactly_the_chosen_day(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_MARTS_REFRESH_INTERVAL_S", "0")  # the sensor may request a build at once
    dataset = generate_dataset(6_000, seed=17, days=3, late_fraction=0.05)
    on_time = [e for e in dataset.events if e["event_id"] not in dataset.late_event_ids]
    late = [e for e in dataset.events if e["event_id"] in dataset.late_event_ids]
    publish(on_time, broker, **producer_options(broker))
    ingest_all(broker)
    build_marts(broker)
    before = hourly(broker)
    cursor = sensor_built_once(broker)

    publish(late, broker, **producer_options(broker))
    ingest_all(broker)
    late_days = Counter(e["timestamp"][:10] for e in late)
    day = late_days.most_common(1)[0][0]
    assert len(late_days) > 1  # so that some affected day is deliberately left alone

    # The freshness path would rebuild every affected day: the marts sensor tags the build with them.
    request = (evaluate_marts_sensor(broker, cursor).run_requests or [])[0]
    assert json.loads(request.tags[DAYS_TAG]) == [min(late_days), max(late_days)]

    cli = str(Path(sys.executable).parent / "analytics-platform")
    result = subprocess.run([cli, "backfill", "--from", day, "--to", day], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    after = hourly(broker)

    expected = expected_hourly(dataset.events)  # all events, late ones included
    for (row_day, hour, kind), (count, built_at) in after.items():
        key = (row_day, hour.strftime("%Y-%m-%dT%H"), kind)
        if row_day == day:
            assert count == expected[key], key
            assert built_at > before.get((row_day, hour, kind), (0, built_at))[1] or (row_day, hour, kind) not in before
        else:
            assert (count, built_at) == before[(row_day, hour, kind)], key  # untouched: not even rewritten
    assert sum(c for (d, _, _), (c, _) in after.items() if d == day) == sum(
        n for (d, _, _), n in expected.items() if d == day
    )
    other_late_day = next(d for d in late_days if d != day)
    assert sum(c for (d, _, _), (c, _) in after.items() if d == other_late_day) < sum(
        n for (d, _, _), n in expected.items() if d == other_late_day
    )  # its late events wait for their own backfill (or the sensors)


def test_schedule_rebuilds_yesterday() -> None:
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 27, 0, 30, tzinfo=UTC)) as context:
        request = daily_marts_yesterday(context)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2026-11-26"
