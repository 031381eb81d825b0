"""Retention: old raw day partitions move to cold storage, older ones are deleted.

- **Cold**: a raw day partition older than ``PLATFORM_RAW_HOT_DAYS`` has its files rewritten (compacted
  on the way) under ``PLATFORM_RAW_COLD_WAREHOUSE``. The table and its schema stay the same; only where
  the files live changes, so every reader (dbt, DuckDB's ``iceberg_scan``, pyiceberg, Trino) reads cold
  days as before, given read access to that location.
- **Deleted**: a raw day partition older than ``PLATFORM_RAW_RETENTION_DAYS`` is dropped by a metadata
  commit that removes exactly its files (no data is rewritten); ``raw.ingest_snapshots`` keeps its rows one
  day longer (a batch's rows may be of the day before its ingest). Dead letters and their replay records
  have ``PLATFORM_DEAD_LETTER_RETENTION_DAYS``, by the day they arrived.

Both commit like compaction (:mod:`analytics_platform.lakehouse.maintenance`): a file appended meanwhile,
even to a day being dropped, is not touched, and the next run takes it. Dropped files stay on disk until
the expiry job deletes them after ``PLATFORM_ORPHAN_GRACE_HOURS``. Everything defaults to off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.compaction import (
    Progress,
    Rewrite,
    files_by_day,
    group_files,
    is_cold,
    rewrite_groups,
)
from analytics_platform.lakehouse.maintenance import (
    PARTITION_KEY,
    FilesGoneError,
    cold_data_path,
    commit_replacement,
    table_name,
)
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, LINEAGE_TABLE, REPLAYS_TABLE, open_table
from analytics_platform.settings import Settings


@dataclass(frozen=True)
class Drop:
    """A day partition deleted (or, in a dry run, that would be)."""

    table: str
    day: date
    files: int
    rows: int
    size_bytes: int
    snapshot_id: int | None = None  # None in a dry run

    def describe(self, verb: str) -> str:
        return (
            f"{self.table} {self.day}: {verb} {self.files} files ({self.size_bytes / 1e6:,.1f} MB, {self.rows:,} rows)"
        )


@dataclass
class RetentionReport:
    moved: list[Rewrite]
    dropped: list[Drop]


def drop_days_before(
    table: Table, first_kept: date, dry_run: bool, progress: Progress, operation: str = "retention"
) -> list[Drop]:
    """Delete every day partition before ``first_kept``, one commit per day naming its files."""
    drops = []
    for day, files in sorted(files_by_day(table).items()):
        if day >= first_kept:
            continue
        drop = Drop(
            table_name(table),
            day,
            len(files),
            sum(f.record_count for f in files),
            sum(f.file_size_in_bytes for f in files),
        )
        if dry_run:
            progress(drop.describe("would delete"))
            drops.append(drop)
            continue
        try:
            snapshot = commit_replacement(table, files, [], operation, {PARTITION_KEY: day.isoformat()})
        except FilesGoneError:
            progress(drop.describe("skipped (another run changed them)"))
            continue
        drop = Drop(drop.table, day, drop.files, drop.rows, drop.size_bytes, snapshot.snapshot_id)
        progress(drop.describe("deleted"))
        drops.append(drop)
    return drops


def move_cold_days(
    settings: Settings, table: Table, today: date, first_kept: date, dry_run: bool, progress: Progress
) -> list[Rewrite]:
    """Rewrite the files of the days past PLATFORM_RAW_HOT_DAYS (from ``first_kept`` on: older ones are
    deleted) that are not in the cold location yet."""
    cold = cold_data_path(settings, table)
    target_bytes = settings.compact_target_mb * 1024 * 1024
    groups = []
    for day, files in sorted(files_by_day(table).items()):
        hot = [data_file for data_file in files if not data_file.file_path.startswith(cold + "/")]
        if hot and day >= first_kept and is_cold(settings, day, today):
            groups += group_files(table, day, hot, target_bytes, min_files=1)
    return list(
        rewrite_groups(
            table, groups, target_bytes, "cold", lambda _: cold, dry_run, progress, ("move to cold", "moved to cold")
        )
    )


def _open(catalog: Catalog, settings: Settings, name: str) -> Table | None:
    try:
        return open_table(catalog, settings, name)
    except TableNotFoundError:
        return None


def apply_retention(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress = print,
) -> RetentionReport:
    """Delete the raw days past PLATFORM_RAW_RETENTION_DAYS, move those past PLATFORM_RAW_HOT_DAYS to cold
    storage, delete dead letters past PLATFORM_DEAD_LETTER_RETENTION_DAYS (each setting 0: off)."""
    catalog = catalog or load_catalog(settings)
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    report = RetentionReport([], [])
    if not (settings.raw_retention_days or settings.raw_hot_days or settings.dead_letter_retention_days):
        progress(
            "retention is off: set PLATFORM_RAW_RETENTION_DAYS, PLATFORM_RAW_HOT_DAYS or "
            "PLATFORM_DEAD_LETTER_RETENTION_DAYS to enable it"
        )
        return report
    raw_first_kept = today - timedelta(days=settings.raw_retention_days)
    for event_type in event_types().values():
        table = _open(catalog, settings, event_type.name)
        if table is None:
            continue
        if settings.raw_retention_days:
            report.dropped += drop_days_before(table, raw_first_kept, dry_run, progress)
        if settings.raw_hot_days:
            first_kept = raw_first_kept if settings.raw_retention_days else date.min
            report.moved += move_cold_days(settings, table, today, first_kept, dry_run, progress)
    if settings.raw_retention_days and (lineage := _open(catalog, settings, LINEAGE_TABLE)) is not None:
        report.dropped += drop_days_before(lineage, raw_first_kept - timedelta(days=1), dry_run, progress)
    if settings.dead_letter_retention_days:
        first_kept = today - timedelta(days=settings.dead_letter_retention_days)
        for name in (DEAD_LETTER_TABLE, REPLAYS_TABLE):
            if (table := _open(catalog, settings, name)) is not None:
                report.dropped += drop_days_before(table, first_kept, dry_run, progress)
    return report
