"""Everything the transform layer adds to the code location: dbt assets, their jobs (with the metrics topic
and the Iceberg marts that follow each publish), sensors and schedule."""

import functools

import dagster as dg

from analytics_platform.defs.quality.checks import raw_quality_checks
from analytics_platform.defs.serving.iceberg_marts import iceberg_marts_asset
from analytics_platform.defs.serving.metrics_latest import metrics_latest
from analytics_platform.defs.transform.assets import daily_mart_assets, dbt_model_assets, dbt_snapshot_assets
from analytics_platform.defs.transform.jobs import marts_jobs
from analytics_platform.defs.transform.live import follow_live_facts_job, live_facts_sensor
from analytics_platform.defs.transform.project import dbt_resource
from analytics_platform.defs.transform.published import PublishedMartsResource
from analytics_platform.defs.transform.schedules import daily_marts_yesterday
from analytics_platform.defs.transform.sensors import build_marts_sensor
from analytics_platform.warehouse.refresh import BUILD_JOB, REFRESH_JOB


@functools.cache
def transform_definitions() -> dg.Definitions:
    snapshots, models, daily = dbt_snapshot_assets(), dbt_model_assets(), daily_mart_assets()
    marts = [key for key in (*models.keys, *daily.keys) if key.path[0] == "marts"]
    downstream = [metrics_latest, iceberg_marts_asset(marts)]
    jobs = marts_jobs(snapshots, models, daily, raw_quality_checks(), downstream)
    return dg.Definitions(
        assets=[snapshots, models, daily, *downstream],
        jobs=[*jobs, follow_live_facts_job],
        sensors=[build_marts_sensor([job for job in jobs if job.name in (REFRESH_JOB, BUILD_JOB)]), live_facts_sensor],
        schedules=[daily_marts_yesterday],
        resources={"dbt": dbt_resource(), "marts": PublishedMartsResource()},
    )
