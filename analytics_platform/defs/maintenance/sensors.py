"""Compaction when the lake needs it rather than on a clock: a day still receiving data gains a small file
per commit (20 a minute at the default poll), a finished day is due once it ended a while ago."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from analytics_platform.defs.maintenance.jobs import COMPACT_JOB
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.lakehouse.compaction import days_due

COMPACT_SENSOR = "compact_when_small_files"
CHECK_INTERVAL_S = 120  # at the default poll, a day gains 40 files per table between two looks
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    name=COMPACT_SENSOR,
    job_name=COMPACT_JOB,
    minimum_interval_seconds=CHECK_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a compact_raw_tables run when a raw day partition is due: today's once it holds "
    "PLATFORM_COMPACT_SMALL_FILES small files, a finished day PLATFORM_COMPACT_AFTER_HOURS after it ended. "
    "One run at a time.",
)
def compact_when_small_files(
    context: dg.SensorEvaluationContext, platform: PlatformResource
) -> dg.RunRequest | dg.SkipReason:
    if context.instance.get_runs_count(dg.RunsFilter(job_name=COMPACT_JOB, statuses=IN_PROGRESS)):
        return dg.SkipReason("a compact_raw_tables run is in progress")
    settings = platform.settings()
    due = days_due(settings, datetime.now(UTC))
    if not due:
        return dg.SkipReason("no raw day partition is due for compaction")
    summary = ", ".join(f"{table} {', '.join(str(day) for day in days)}" for table, days in sorted(due.items()))
    context.log.info(f"due for compaction: {summary}")
    return dg.RunRequest(tags={"platform/compact": summary[:200]})
