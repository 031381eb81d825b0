"""Keep the marts current after each ingest: one build at a time, keyed by raw snapshots.

Raw truth is the Iceberg tables, so ``marts_after_ingest_sensor`` compares their current snapshot ids
with those the last requested build saw, and requests a build at most every ``marts_refresh_interval_s``
(meanwhile the per-minute facts follow the raw tables within seconds: see ``live.py``). One run covers
every non-daily model (snapshots, staging, dimensions...), which on a small machine beats per-model
eager automation, and then rebuilds exactly the days of the daily facts the new rows touched (late
events included) as its partition range. One run, not a build followed by a daily run: each Dagster
run launch costs ~15 s here.
"""

import json
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from analytics_platform.defs.ingestion.sensors import IN_FLIGHT
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.partitions import PARTITIONS_START
from analytics_platform.events import EVENT_TYPES
from analytics_platform.ingest.changes import event_days_since
from analytics_platform.ingest.lakehouse import load_catalog, raw_table
from analytics_platform.settings import Settings

BUILD_INTERVAL_S = 5
BUILD_JOB = "build_marts"
REFRESH_JOB = "refresh_marts"
DAYS_TAG = "analytics_platform/event_days"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
SENSOR_TAG = "dagster/sensor_name"
MARTS_SENSOR = "marts_after_ingest_sensor"


def raw_snapshot_ids(settings: Settings) -> dict[str, int]:
    """Current snapshot id of every raw table (0 for a table with none)."""
    catalog = load_catalog(settings)
    ids = {}
    for name, event_type in sorted(EVENT_TYPES.items()):
        snapshot = raw_table(catalog, settings, event_type).current_snapshot()
        ids[name] = snapshot.snapshot_id if snapshot else 0
    return ids


def touched_days(settings: Settings, previous: dict[str, int]) -> tuple[date, date] | None:
    """The event days the rows landed since ``previous`` snapshot ids fall in (first, last)."""
    catalog = load_catalog(settings)
    bounds = [
        days
        for name, event_type in EVENT_TYPES.items()
        if (days := event_days_since(raw_table(catalog, settings, event_type), previous.get(name) or None))
    ]
    if not bounds:
        return None
    return min(first for first, _ in bounds), max(last for _, last in bounds)


def partition_range(days: tuple[date, date], today: date) -> tuple[str, str] | None:
    """The days clipped to the partitions that exist (PARTITIONS_START .. today), as partition keys."""
    first = max(days[0], date.fromisoformat(PARTITIONS_START))
    last = min(days[1], today)
    return (first.isoformat(), last.isoformat()) if first <= last else None


def marts_run(days: tuple[date, date] | None, today: date) -> tuple[str, dict[str, str]]:
    """The job (and its tags) that rebuilds the marts after rows touching ``days`` landed: ``refresh_marts``
    over those days that are daily partitions, or ``build_marts`` (the models without partitions) if none."""
    if days is None:
        return BUILD_JOB, {}
    tags = {DAYS_TAG: json.dumps([d.isoformat() for d in days])}
    keys = partition_range(days, today)
    if keys is None:
        return BUILD_JOB, tags
    return REFRESH_JOB, tags | {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[1]}


def build_marts_sensor(
    refresh_job: "UnresolvedAssetJobDefinition", build_job: "UnresolvedAssetJobDefinition"
) -> dg.SensorDefinition:
    @dg.sensor(
        name=MARTS_SENSOR,
        jobs=[refresh_job, build_job],
        minimum_interval_seconds=BUILD_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a build of the marts, and of the daily facts of the days the new rows "
        "touched, whenever a raw Iceberg table has a new snapshot.",
    )
    def marts_after_ingest(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        for job in (refresh_job, build_job):
            if context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1):
                return dg.SensorResult(skip_reason="a marts build is running; the next one starts after it")
        settings = platform.settings()
        # Builds run by hand (CLI, UI) do not count: only this sensor's requests are spaced out.
        mine = dg.RunsFilter(job_name=refresh_job.name, tags={SENSOR_TAG: MARTS_SENSOR})
        last = context.instance.get_run_records(mine, limit=1)
        since_last = time.time() - last[0].create_timestamp.timestamp() if last else None
        if since_last is not None and since_last < settings.marts_refresh_interval_s:
            return dg.SensorResult(
                skip_reason=f"this sensor's last full marts build started {since_last:.0f}s ago; the next is due "
                f"{settings.marts_refresh_interval_s:.0f}s after it (the live facts follow meanwhile)"
            )
        ids = raw_snapshot_ids(settings)
        key = ",".join(f"{name}:{snapshot_id}" for name, snapshot_id in ids.items())
        if key == context.cursor:
            return dg.SensorResult(skip_reason="the marts are built from the current raw snapshots")
        if not any(ids.values()):
            return dg.SensorResult(skip_reason="no raw data has landed yet", cursor=key)
        previous = dict(part.split(":") for part in (context.cursor or "").split(",") if ":" in part)
        days = touched_days(settings, {name: int(snapshot_id) for name, snapshot_id in previous.items()})
        job_name, tags = marts_run(days, datetime.now(UTC).date())
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=key, job_name=job_name, tags=tags)], cursor=key)

    return marts_after_ingest
