"""Yesterday's daily facts, rebuilt once the day is over: the late events of yesterday are in by then.

The freshness path (sensors) already keeps every touched day current; this schedule is the daily
reconciliation a team can rely on for reporting, independent of whether ingest ran in the meantime.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from analytics_platform.warehouse.refresh import DAILY_JOB

DAILY_CRON = "30 0 * * *"  # 00:30 UTC: late events of yesterday have had half an hour to land


@dg.schedule(
    name="daily_marts_yesterday",
    cron_schedule=DAILY_CRON,
    job_name=DAILY_JOB,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuilds yesterday's partition of the daily facts at 00:30 UTC (raw quality checks first).",
)
def daily_marts_yesterday(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    scheduled = context.scheduled_execution_time or datetime.now(UTC)
    yesterday = (scheduled.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=yesterday, partition_key=yesterday)
