"""Everything lake maintenance adds to the code location: its jobs, their schedules and the compaction sensor."""

import dagster as dg

from analytics_platform.defs.maintenance.jobs import (
    apply_raw_retention_job,
    compact_raw_tables_job,
    expire_raw_snapshots_job,
)
from analytics_platform.defs.maintenance.schedules import maintenance_schedules
from analytics_platform.defs.maintenance.sensors import compact_when_small_files


def maintenance_definitions() -> dg.Definitions:
    return dg.Definitions(
        jobs=[compact_raw_tables_job, expire_raw_snapshots_job, apply_raw_retention_job],
        schedules=maintenance_schedules,
        sensors=[compact_when_small_files],
    )
