"""Keep the marts current after each ingest: one build at a time, keyed by raw snapshots.

``marts_after_ingest_sensor`` compares the raw tables' current snapshot ids with those the last requested
build saw and requests a build at most every ``marts_refresh_interval_s``, and less often when builds take
long (``next_build_due``; meanwhile the per-minute facts follow the raw tables within seconds: see
``live.py``). One run covers every non-daily model and then rebuilds exactly the days of the daily facts the
new rows touched, as its partition range: on a small machine one run beats per-model eager automation, and
each run launch costs ~15 s. A build whose run died or failed is requested again (see
:mod:`analytics_platform.defs.runs`).
"""

import time
from datetime import UTC, datetime

import dagster as dg

from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import IN_FLIGHT, WORK_TAG, earlier_runs, next_attempt
from analytics_platform.warehouse.refresh import (
    BUILD_JOB,
    REFRESH_JOB,
    marts_run,
    next_build_due,
    raw_snapshot_ids,
    touched_days,
)

BUILD_INTERVAL_S = 5
SENSOR_TAG = "dagster/sensor_name"
MARTS_SENSOR = "marts_after_ingest_sensor"


def _decode_cursor(cursor: str | None) -> dict[str, int]:
    return {
        name: int(snapshot_id) for name, _, snapshot_id in (p.partition(":") for p in (cursor or "").split(",") if p)
    }


def _work_of(run: dg.DagsterRun) -> str | None:
    return run.tags.get(WORK_TAG)


def build_marts_sensor(jobs: list) -> dg.SensorDefinition:
    """The marts sensor, requesting runs of ``jobs`` (refresh_marts and build_marts)."""

    @dg.sensor(
        name=MARTS_SENSOR,
        jobs=jobs,
        minimum_interval_seconds=BUILD_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a build of the marts, and of the daily facts of the days the new rows touched, "
        "whenever a raw Iceberg table has a new snapshot; again if that build's run died or failed.",
    )
    def marts_after_ingest_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        for job_name in (REFRESH_JOB, BUILD_JOB):
            if context.instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1):
                return dg.SensorResult(skip_reason="a marts build is running; the next one starts after it")
        settings = platform.settings()
        # Builds run by hand (CLI, UI) do not count: only this sensor's requests are spaced out.
        last = context.instance.get_run_records(dg.RunsFilter(tags={SENSOR_TAG: MARTS_SENSOR}), limit=1)
        built_from = context.cursor  # the raw snapshots of the last build this sensor saw succeed
        if last and last[0].dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            built_from = _work_of(last[0].dagster_run) or built_from
        if last:
            created, started, ended = last[0].create_timestamp.timestamp(), last[0].start_time, last[0].end_time
            took = ended - started if started is not None and ended is not None else None
            due = next_build_due(settings, created, took)
            if time.time() < due:
                paced = (
                    f" (it took {took:.0f}s, and full builds take at most "
                    f"{settings.marts_refresh_max_busy_share:.0%} of the time)"
                    if due - created > settings.marts_refresh_interval_s
                    else ""
                )
                return dg.SensorResult(
                    skip_reason=f"this sensor's last marts build started {time.time() - created:.0f}s ago; the "
                    f"next is due {due - created:.0f}s after it{paced}; the live facts follow meanwhile",
                    cursor=built_from,
                )
        ids = raw_snapshot_ids(settings)
        if not any(ids.values()):
            return dg.SensorResult(skip_reason="no raw data has landed yet", cursor=built_from)
        work = ",".join(f"{name}:{snapshot_id}" for name, snapshot_id in ids.items())
        if work == built_from:
            return dg.SensorResult(skip_reason="the marts are built from the current raw snapshots", cursor=built_from)
        attempt = next_attempt(work, earlier_runs(context.instance, work))
        if attempt.run_key is None:
            return dg.SensorResult(skip_reason=attempt.skip_reason, cursor=built_from)
        job_name, tags = marts_run(touched_days(settings, _decode_cursor(built_from)), datetime.now(UTC).date())
        request = dg.RunRequest(run_key=attempt.run_key, job_name=job_name, tags=tags | {WORK_TAG: work})
        return dg.SensorResult(run_requests=[request], cursor=built_from)

    return marts_after_ingest_sensor
