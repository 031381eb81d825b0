"""The one entry point Dagster loads (``workspace.yaml`` and ``pyproject.toml`` point here)."""

from __future__ import annotations

import dagster as dg

from analytics_platform.defs.ingestion.assets import dead_letter_spec, raw_assets, topic_specs
from analytics_platform.defs.ingestion.sensors import ingest_jobs, ingest_sensors
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.assets import dbt_models
from analytics_platform.defs.transform.project import dbt_resource

transform_job = dg.define_asset_job(
    "build_marts",
    selection=dg.AssetSelection.assets(dbt_models),
    executor_def=dg.in_process_executor,
    description="dbt build of every model into a new DuckDB file, published atomically on success.",
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "marts_automation",
    target=dg.AssetSelection.assets(dbt_models),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
)

defs = dg.Definitions(
    assets=[*topic_specs, dead_letter_spec, *raw_assets, dbt_models],
    jobs=[*ingest_jobs.values(), transform_job],
    sensors=[*ingest_sensors, automation_sensor],
    resources={"platform": PlatformResource(), "dbt": dbt_resource()},
)
