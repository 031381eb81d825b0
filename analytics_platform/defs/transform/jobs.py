"""The jobs that build and publish the marts. Each runs the raw tables' blocking checks first: if one
fails, no dbt step starts and the published marts stay as they were."""

import dagster as dg

from analytics_platform.defs.retries import CRASH_RETRY_TAGS
from analytics_platform.defs.workloads import MARTS
from analytics_platform.warehouse.refresh import BUILD_JOB, DAILY_JOB, REFRESH_JOB


def marts_jobs(
    snapshots: dg.AssetsDefinition,
    models: dg.AssetsDefinition,
    daily: dg.AssetsDefinition,
    raw_checks: dg.AssetChecksDefinition,
    downstream: list[dg.AssetsDefinition],
) -> list:  # unresolved asset jobs (their class is not public)
    """``downstream``: what follows every publish (the metrics topic, the Iceberg marts), in the same run."""
    checks = dg.AssetSelection.checks(raw_checks)
    after = dg.AssetSelection.assets(*downstream)
    return [
        dg.define_asset_job(
            BUILD_JOB,
            selection=dg.AssetSelection.assets(snapshots, models) | checks | after,
            executor_def=dg.in_process_executor,
            tags=CRASH_RETRY_TAGS | MARTS.tags(),
            description="Raw quality checks, then dbt builds of the snapshots and every model that is not daily, "
            "each into a new DuckDB file published atomically on success.",
        ),
        dg.define_asset_job(
            DAILY_JOB,
            selection=dg.AssetSelection.assets(daily) | checks | after,
            executor_def=dg.in_process_executor,
            tags=CRASH_RETRY_TAGS | MARTS.tags(),
            description="Raw quality checks, then delete and rebuild the daily facts of the run's days (a "
            "partition or a backfill range).",
        ),
        dg.define_asset_job(
            REFRESH_JOB,
            selection=dg.AssetSelection.assets(snapshots, models, daily) | checks | after,
            executor_def=dg.in_process_executor,
            tags=CRASH_RETRY_TAGS | MARTS.tags(),
            description="What build_marts does, then the daily facts of the run's days, in one run: the marts "
            "sensor's job, so fresh events pay one run launch, not two.",
        ),
    ]
