"""The one entry point Dagster loads (``workspace.yaml`` and ``pyproject.toml`` point here)."""

from __future__ import annotations

import dagster as dg

from analytics_platform.defs.ingestion.assets import dead_letter_spec, raw_assets, topic_specs
from analytics_platform.defs.ingestion.sensors import ingest_jobs, ingest_sensors
from analytics_platform.defs.quality.checks import raw_quality_checks
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.assets import daily_marts, dbt_models
from analytics_platform.defs.transform.live import follow_live_facts_job, live_facts_sensor
from analytics_platform.defs.transform.project import dbt_resource
from analytics_platform.defs.transform.schedules import build_daily_schedule
from analytics_platform.defs.transform.sensors import BUILD_JOB, REFRESH_JOB, build_marts_sensor

transform_job = dg.define_asset_job(
    BUILD_JOB,
    # The raw tables' blocking quality checks run first; if one fails, dbt does not start.
    selection=dg.AssetSelection.assets(dbt_models) | dg.AssetSelection.checks(raw_quality_checks),
    executor_def=dg.in_process_executor,
    description="Raw quality checks, then a dbt build of every model into a new DuckDB file, published "
    "atomically on success.",
)

daily_job = dg.define_asset_job(
    "build_daily_marts",
    selection=dg.AssetSelection.assets(daily_marts),
    executor_def=dg.in_process_executor,
    description="Delete and rebuild the daily facts of the run's days (a partition or a backfill range).",
)

refresh_job = dg.define_asset_job(
    REFRESH_JOB,
    selection=dg.AssetSelection.assets(dbt_models, daily_marts) | dg.AssetSelection.checks(raw_quality_checks),
    executor_def=dg.in_process_executor,
    description="What build_marts does, then the daily facts of the run's days, in one run: the marts "
    "sensor's job, so fresh events pay one run launch, not two.",
)

marts_sensor = build_marts_sensor(refresh_job, transform_job)
daily_schedule = build_daily_schedule(daily_job)

defs = dg.Definitions(
    assets=[*topic_specs, dead_letter_spec, *raw_assets, dbt_models, daily_marts],
    asset_checks=[raw_quality_checks],
    jobs=[*ingest_jobs.values(), transform_job, daily_job, refresh_job, follow_live_facts_job],
    sensors=[*ingest_sensors, marts_sensor, live_facts_sensor],
    schedules=[daily_schedule],
    resources={"platform": PlatformResource(), "dbt": dbt_resource()},
    # Runs launched from the UI's Materialize button are one step too: a subprocess per step only adds seconds.
    executor=dg.in_process_executor,
)
