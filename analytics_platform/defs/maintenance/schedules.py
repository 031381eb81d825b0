"""When the lake's snapshots expire and its days age: after the day's marts are rebuilt (00:30 UTC), staggered
so that two maintenance jobs never compete for the 2 cores with each other. Compaction has a sensor instead
(:mod:`analytics_platform.defs.maintenance.sensors`): it runs when a partition needs it."""

import dagster as dg

from analytics_platform.defs.maintenance.jobs import EXPIRE_JOB, RETENTION_JOB


def _schedule(name: str, cron: str, job_name: str, description: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=name,
        cron_schedule=cron,
        job_name=job_name,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )


maintenance_schedules = [
    _schedule(
        "expire_raw_snapshots_6h",
        "45 */6 * * *",
        EXPIRE_JOB,
        "Expires snapshots and deletes files unreferenced for the grace period, every 6 hours.",
    ),
    _schedule(
        "apply_raw_retention_daily",
        "15 4 * * *",
        RETENTION_JOB,
        "Moves raw days past hot to cold, deletes days past retention (off by default), at 04:15 UTC.",
    ),
]
