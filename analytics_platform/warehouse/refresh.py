"""What a marts refresh must rebuild after new raw data landed: which days, and which job does it.

Raw truth is the Iceberg tables: their current snapshot ids say whether anything landed since a
build, and the rows committed since then say which event days the daily facts must recompute (late
events included). Dagster-free, so the marts sensor, the CLI's ``build`` and the live follower share
it, and it is tested without Dagster.
"""

from __future__ import annotations

import functools
import json
from datetime import date, datetime

from analytics_platform.contracts.envelope import event_types
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.lineage import recorded_ingested_at
from analytics_platform.lakehouse.snapshots import event_times_since
from analytics_platform.lakehouse.tables import open_raw_table
from analytics_platform.settings import Settings

# The first daily partition: the synthetic data's history starts here (reference data four weeks before
# the generator's default start); a deployment with older events moves it back.
PARTITIONS_START = "2026-10-01"
BUILD_JOB = "build_marts"
REFRESH_JOB = "refresh_marts"
DAILY_JOB = "build_daily_marts"
DAYS_TAG = "analytics_platform/event_days"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def raw_snapshot_ids(settings: Settings) -> dict[str, int]:
    """Current snapshot id of every raw table (0 for a table with none, or not created yet)."""
    catalog = load_catalog(settings)
    ids = {}
    for name, event_type in sorted(event_types().items()):
        table = open_raw_table(catalog, settings, event_type)
        snapshot = table.current_snapshot() if table is not None else None
        ids[name] = snapshot.snapshot_id if snapshot else 0
    return ids


def touched_times(settings: Settings, previous: dict[str, int]) -> tuple[datetime, datetime] | None:
    """The (earliest, latest) event time of the rows landed since ``previous`` snapshot ids."""
    catalog = load_catalog(settings)
    bounds = []
    for name, event_type in event_types().items():
        table = open_raw_table(catalog, settings, event_type)
        if table is None:
            continue
        expired = functools.partial(recorded_ingested_at, catalog, settings, table)  # once its snapshot is gone
        if times := event_times_since(table, previous.get(name) or None, expired):
            bounds.append(times)
    if not bounds:
        return None
    return min(first for first, _ in bounds), max(last for _, last in bounds)


def touched_days(settings: Settings, previous: dict[str, int]) -> tuple[date, date] | None:
    """The event days the rows landed since ``previous`` snapshot ids fall in (first, last)."""
    times = touched_times(settings, previous)
    return (times[0].date(), times[1].date()) if times else None


def paced_period(interval_s: float, took_s: float, share: float) -> float:
    """Least time from one start of a piece of marts work to the next: ``interval_s``, or longer when the work
    took ``took_s``, so that it is busy at most ``share`` of the time. A busy machine makes the work slower,
    so it then runs less often rather than taking the cores ingestion needs."""
    return max(interval_s, took_s / share)


def next_build_due(settings: Settings, created_at: float, took_s: float | None) -> float:
    """When the marts sensor's next full build may start, after its last one, created at ``created_at``, ran
    for ``took_s`` (None: unknown): :func:`paced_period` after it, at ``marts_refresh_max_busy_share``."""
    period = paced_period(settings.marts_refresh_interval_s, took_s or 0.0, settings.marts_refresh_max_busy_share)
    return created_at + period


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
