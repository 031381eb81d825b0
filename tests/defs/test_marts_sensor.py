"""The marts sensor requests one build per new set of raw snapshots, and none while nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import TERMINAL_TAG, WORK_TAG
from analytics_platform.defs.transform.sensors import MARTS_SENSOR, SENSOR_TAG
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings
from analytics_platform.warehouse.refresh import REFRESH_JOB
from tests.helpers import produce

pytestmark = pytest.mark.integration


def evaluate(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"platform": PlatformResource()}
    ) as context:
        result = platform_definitions().resolve_sensor_def(MARTS_SENSOR)(context)
    assert isinstance(result, dg.SensorResult)
    return result


def marts_run(instance: dg.DagsterInstance, request: dg.RunRequest, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    """Record a run of ``request`` as the daemon would launch it, ended with ``status``."""
    job = platform_definitions().resolve_job_def(request.job_name or REFRESH_JOB)
    tags = {**request.tags, SENSOR_TAG: MARTS_SENSOR, "dagster/run_key": request.run_key or ""}
    return instance.create_run_for_job(job, tags=tags, status=status)


def test_one_build_request_per_new_raw_snapshot(broker: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_MARTS_REFRESH_INTERVAL_S", "0")
    instance = get_instance(broker)

    assert not evaluate(instance).run_requests  # nothing landed yet: nothing to build

    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    first = evaluate(instance)
    assert len(first.run_requests or []) == 1
    request = first.run_requests[0]
    # Re-evaluated before the run exists: the same run key, which the daemon launches once.
    assert [r.run_key for r in evaluate(instance, first.cursor).run_requests or []] == [request.run_key]
    marts_run(instance, request, dg.DagsterRunStatus.SUCCESS)
    done = evaluate(instance, first.cursor)
    assert not done.run_requests  # built from these snapshots
    assert done.cursor == request.tags[WORK_TAG]

    produce(broker, 500, seed=2)
    ingest_until_caught_up(broker, "events.purchase")
    second = evaluate(instance, done.cursor)
    assert len(second.run_requests or []) == 1
    assert second.run_requests[0].run_key != request.run_key


def test_a_build_whose_run_died_is_requested_again_under_a_new_key(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_MARTS_REFRESH_INTERVAL_S", "0")
    instance = get_instance(broker)
    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    request = (evaluate(instance).run_requests or [])[0]
    marts_run(instance, request, dg.DagsterRunStatus.FAILURE)  # what run monitoring reports for a dead worker

    retry = (evaluate(instance).run_requests or [])[0]
    assert retry.run_key == f"{request.run_key}|attempt:2"
    assert retry.tags[WORK_TAG] == request.tags[WORK_TAG]  # the same work: the same raw snapshots

    failed = marts_run(instance, retry, dg.DagsterRunStatus.FAILURE)
    instance.add_run_tags(failed.run_id, {TERMINAL_TAG: "ModelBuildError"})  # a failing data test, say
    held = evaluate(instance)
    assert not held.run_requests
    assert "retrying cannot fix" in (held.skip_reason.skip_message or "")


def test_the_sensors_full_builds_start_at_most_once_per_refresh_interval(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = get_instance(broker)
    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    # A full build this sensor requested a moment ago (ended: not in flight).
    run = instance.create_run_for_job(
        platform_definitions().resolve_job_def(REFRESH_JOB), tags={SENSOR_TAG: MARTS_SENSOR}
    )
    instance.report_run_failed(run)

    result = evaluate(instance)
    assert not result.run_requests
    assert result.skip_reason is not None
    assert "next is due 300s after it" in (result.skip_reason.skip_message or "")

    monkeypatch.setenv("PLATFORM_MARTS_REFRESH_INTERVAL_S", "0")
    assert len(evaluate(instance).run_requests or []) == 1


def test_a_long_full_build_spaces_out_the_next_one(broker: Settings) -> None:
    instance = get_instance(broker)
    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    # The sensor's last full build started 400 s ago and ran 300 s: past the 300-second interval, but builds
    # may take at most 30% of the time, so the next one is due 1,000 s after it.
    job = platform_definitions().resolve_job_def(REFRESH_JOB)
    run = instance.create_run_for_job(job, tags={SENSOR_TAG: MARTS_SENSOR})
    now = datetime.now(UTC)
    for event_type, at in ((dg.DagsterEventType.RUN_START, 400), (dg.DagsterEventType.RUN_SUCCESS, 100)):
        event = dg.DagsterEvent(event_type_value=event_type.value, job_name=job.name)
        instance.run_storage.handle_run_event(run.run_id, event, update_timestamp=now - timedelta(seconds=at))

    result = evaluate(instance)
    assert not result.run_requests
    assert "next is due 1000s after it (it took 300s, and full builds take at most 30% of the time)" in (
        result.skip_reason.skip_message or ""
    )
