"""Rebuild the marts after new raw data lands: one full dbt build at a time, keyed by raw snapshots.

Raw truth is the Iceberg tables, so the sensor compares their current snapshot ids with those the
last requested build saw. One build covers every model (a build copies the published file and runs
``dbt build``), which on a small machine beats per-model eager automation: many small subset runs
queue behind the build lock while ingest keeps the CPU busy.
"""

import dagster as dg

from analytics_platform.defs.ingestion.sensors import IN_FLIGHT
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.events import EVENT_TYPES
from analytics_platform.ingest.lakehouse import load_catalog, raw_table

BUILD_INTERVAL_S = 10


def raw_snapshot_key(platform: PlatformResource) -> str:
    """``<table>:<snapshot id>`` of every raw table: changes exactly when new data (or a reset) lands."""
    settings = platform.settings()
    catalog = load_catalog(settings)
    parts = []
    for name, event_type in sorted(EVENT_TYPES.items()):
        snapshot = raw_table(catalog, settings, event_type).current_snapshot()
        parts.append(f"{name}:{snapshot.snapshot_id if snapshot else 0}")
    return ",".join(parts)


def build_marts_sensor(job_name: str) -> dg.SensorDefinition:
    @dg.sensor(
        name="marts_after_ingest_sensor",
        job_name=job_name,
        minimum_interval_seconds=BUILD_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a dbt build of the marts whenever a raw Iceberg table has a new snapshot.",
    )
    def marts_after_ingest(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        if context.instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=1):
            return dg.SensorResult(skip_reason="a marts build is running; the next one starts after it")
        key = raw_snapshot_key(platform)
        if key == context.cursor:
            return dg.SensorResult(skip_reason="the marts are built from the current raw snapshots")
        if all(part.endswith(":0") for part in key.split(",")):
            return dg.SensorResult(skip_reason="no raw data has landed yet", cursor=key)
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key)], cursor=key)

    return marts_after_ingest
