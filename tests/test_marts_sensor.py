"""The marts sensor requests one build per new set of raw snapshots, and none while nothing changed."""

from __future__ import annotations

import dagster as dg
import pytest

from analytics_platform.definitions import defs, marts_sensor
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.sensors import REFRESH_JOB, SENSOR_TAG
from analytics_platform.ingest.batch import ingest_until_caught_up
from analytics_platform.instance import get_instance
from analytics_platform.settings import Settings
from tests.helpers import produce


def evaluate(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"platform": PlatformResource()}
    ) as context:
        result = marts_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_one_build_request_per_new_raw_snapshot(broker: Settings) -> None:
    instance = get_instance(broker)

    assert not evaluate(instance).run_requests  # nothing landed yet: nothing to build

    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    first = evaluate(instance)
    assert len(first.run_requests or []) == 1
    assert not evaluate(instance, first.cursor).run_requests  # same raw snapshots: already requested

    produce(broker, 500, seed=2)
    ingest_until_caught_up(broker, "events.purchase")
    second = evaluate(instance, first.cursor)
    assert len(second.run_requests or []) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_the_sensors_full_builds_start_at_most_once_per_refresh_interval(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = get_instance(broker)
    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    # A full build this sensor requested a moment ago (ended: not in flight).
    run = instance.create_run_for_job(defs.resolve_job_def(REFRESH_JOB), tags={SENSOR_TAG: marts_sensor.name})
    instance.report_run_failed(run)

    result = evaluate(instance)
    assert not result.run_requests
    assert result.skip_reason is not None
    assert "next is due 300s after it" in (result.skip_reason.skip_message or "")

    monkeypatch.setenv("PLATFORM_MARTS_REFRESH_INTERVAL_S", "0")
    assert len(evaluate(instance).run_requests or []) == 1
