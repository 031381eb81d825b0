"""Compaction: a day partition's small data files rewritten into files of the target size.

Ingestion commits every few seconds, one small file per touched day each time: 28,800 a day per topic
at the default poll. Every reader plans over all of them (the dedup window, the live follower's "days
touched", DuckDB), so a day that no longer receives data is rewritten into files of
``PLATFORM_COMPACT_TARGET_MB``, about 1 file per target size instead of thousands. The day still
receiving data is compacted too, alongside ingestion, by size tier: each time it holds
``PLATFORM_COMPACT_SMALL_FILES`` small files of one tier (files within 10x of each other's size), those
are merged (the ``compact_when_small_files`` sensor requests the run). A partition then holds at most
about that many files per tier, four tiers at the defaults, and each byte is rewritten once per tier.

A rewrite reads exactly the files it names, sorts their rows by ingest time and Kafka position (so the
new files' ``ingested_at`` bounds stay narrow for the dedup window and as-of reads), writes the new
files, reads them back and compares the row count and a content checksum, and only then commits them
in place of the old ones in one snapshot (:func:`~analytics_platform.lakehouse.maintenance.commit_replacement`).
Rows appended meanwhile are in other files, which the commit does not touch. The old files stay on disk
for readers of older snapshots until the expiry job deletes them after ``PLATFORM_ORPHAN_GRACE_HOURS``.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.conversions import from_bytes
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.types import TimestamptzType

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import TerminalError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.maintenance import (
    PARTITION_KEY,
    FilesGoneError,
    MaintenanceConflictError,
    cold_data_path,
    commit_replacement,
    table_name,
)
from analytics_platform.lakehouse.tables import open_raw_table
from analytics_platform.settings import Settings

SMALL_SHARE = 0.75  # a file under this share of the target size is small
SORT_COLUMNS = ("ingested_at", "kafka_partition", "kafka_offset")
EPOCH_DAY = date(1970, 1, 1)

Progress = Callable[[str], None]


class RewriteMismatchError(TerminalError):
    """The rewritten files do not hold exactly the rows of the files they replace; nothing was committed."""


@dataclass(frozen=True)
class FileGroup:
    """Data files of one day partition that one commit rewrites together (at most about one target size)."""

    day: date
    files: tuple[DataFile, ...]

    @property
    def rows(self) -> int:
        return sum(data_file.record_count for data_file in self.files)

    @property
    def size_bytes(self) -> int:
        return sum(data_file.file_size_in_bytes for data_file in self.files)


@dataclass(frozen=True)
class Rewrite:
    """One rewritten (or, in a dry run, planned) group: what it replaced and by what."""

    table: str
    day: date
    files_before: int
    bytes_before: int
    rows: int
    files_after: int = 0
    bytes_after: int = 0
    checksum: str = ""  # of the rows, identical before and after (empty in a dry run)
    snapshot_id: int | None = None  # the commit (None in a dry run, or if another run took the files first)

    def describe(self, verb: str) -> str:
        after = f" into {self.files_after} ({_mb(self.bytes_after)})" if self.files_after else ""
        return (
            f"{self.table} {self.day}: {verb} {self.files_before} files ({_mb(self.bytes_before)}, "
            f"{self.rows:,} rows){after}"
        )


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def day_of(data_file: DataFile) -> date:
    """The day partition a data file is in (the raw tables' one partition field is a day transform)."""
    return EPOCH_DAY + timedelta(days=int(data_file.partition[0]))


def files_by_day(table: Table) -> dict[date, list[DataFile]]:
    """The data files of the table's current snapshot, by day partition (files of an older spec left out)."""
    spec_id = table.spec().spec_id
    days: dict[date, list[DataFile]] = defaultdict(list)
    for task in table.scan().plan_files():
        if task.file.spec_id == spec_id:
            days[day_of(task.file)].append(task.file)
    return dict(days)


def checksum(rows: pa.Table) -> str:
    """An order-independent checksum of every value of every row (a sum of row hashes, modulo 2^64): the
    same rows in any file layout give the same value, a lost, changed or doubled row another."""
    if rows.num_rows == 0:
        return f"{0:016x}"
    hashes = pl.DataFrame({"hash": pl.from_arrow(rows).hash_rows(seed=0)})  # type: ignore[union-attr]
    # Summed as two 32-bit halves, which cannot overflow 64 bits below 2^32 rows.
    high, low = hashes.select(
        pl.col("hash").floordiv(1 << 32).sum().alias("high"), (pl.col("hash") % (1 << 32)).sum().alias("low")
    ).row(0)
    return f"{((high << 32) + low) % (1 << 64):016x}"


def read_files(table: Table, files: Sequence[DataFile]) -> pa.Table:
    """The rows of exactly ``files``, in the table's current schema (columns added since read as null)."""
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    return scan.to_table([FileScanTask(data_file) for data_file in files])


def _sorted(rows: pa.Table) -> pa.Table:
    keys = [(column, "ascending") for column in SORT_COLUMNS if column in rows.column_names]
    return rows.sort_by(keys) if keys else rows


def _ingested_at_lower(table: Table, data_file: DataFile) -> int:
    try:
        field_id = table.schema().find_field("ingested_at").field_id
    except ValueError:
        return 0
    lower = data_file.lower_bounds.get(field_id)
    return int(from_bytes(TimestamptzType(), lower)) if lower is not None else 0


def group_files(
    table: Table, day: date, files: Sequence[DataFile], target_bytes: int, min_files: int
) -> list[FileGroup]:
    """``files`` in ingest order, cut into groups of at most ``target_bytes``; groups of fewer than
    ``min_files`` files are left out (rewriting one file alone gains nothing, unless it moves)."""
    ordered = sorted(files, key=lambda data_file: (_ingested_at_lower(table, data_file), data_file.file_path))
    groups: list[list[DataFile]] = [[]]
    size = 0
    for data_file in ordered:
        if groups[-1] and size + data_file.file_size_in_bytes > target_bytes:
            groups.append([])
            size = 0
        groups[-1].append(data_file)
        size += data_file.file_size_in_bytes
    return [FileGroup(day, tuple(group)) for group in groups if len(group) >= max(min_files, 1)]


def small_files_by_day(table: Table, target_bytes: int) -> dict[date, list[DataFile]]:
    """The small data files (under SMALL_SHARE of the target size) of each day partition that has any."""
    days = {
        day: [data_file for data_file in files if data_file.file_size_in_bytes < SMALL_SHARE * target_bytes]
        for day, files in files_by_day(table).items()
    }
    return {day: small for day, small in days.items() if small}


def size_tier(data_file: DataFile, target_bytes: int) -> int:
    """0 for a small file within 10x of the small limit, 1 within 100x, and so on: files of one tier are
    merged together, so that a byte of a day still receiving data is rewritten once per tier, not once per run."""
    return int(math.log10(SMALL_SHARE * target_bytes / max(data_file.file_size_in_bytes, 1)))


def due_files(
    day: date, small: Sequence[DataFile], last_day: date, target_bytes: int, current_min_files: int
) -> list[list[DataFile]]:
    """The sets of small files of ``day`` to compact now (each into files of the target size):

    - a finished day (up to ``last_day``): all of them, if there are two or more;
    - a day still receiving data: each size tier that holds ``current_min_files`` files (0: none ever)."""
    if day <= last_day:
        return [list(small)] if len(small) >= 2 else []
    if current_min_files == 0:
        return []
    tiers: dict[int, list[DataFile]] = defaultdict(list)
    for data_file in small:
        tiers[size_tier(data_file, target_bytes)].append(data_file)
    return [files for _, files in sorted(tiers.items()) if len(files) >= max(current_min_files, 2)]


def plan_compaction(table: Table, target_bytes: int, last_day: date, current_min_files: int = 0) -> list[FileGroup]:
    """The groups of small files of each day that are due (see :func:`due_files`)."""
    plan = []
    for day, small in sorted(small_files_by_day(table, target_bytes).items()):
        for files in due_files(day, small, last_day, target_bytes, current_min_files):
            plan += group_files(table, day, files, target_bytes, min_files=2)
    return plan


def write_data_files(table: Table, rows: pa.Table, rows_per_file: int, data_path: str | None) -> list[DataFile]:
    """``rows`` as new data files of the table (not committed), ``rows_per_file`` each, under ``data_path``."""
    overrides = {TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: str(1 << 50)}  # the files are cut here, not by pyiceberg
    if data_path is not None:
        overrides[TableProperties.WRITE_DATA_PATH] = data_path
    metadata = table.metadata.model_copy(update={"properties": {**table.metadata.properties, **overrides}})
    written: list[DataFile] = []
    for offset in range(0, rows.num_rows, rows_per_file):
        chunk = rows.slice(offset, rows_per_file)
        written += _dataframe_to_data_files(table_metadata=metadata, df=chunk, io=table.io, write_uuid=uuid.uuid4())
    for data_file in written:
        data_file.spec_id = table.spec().spec_id  # set when read from a manifest; these are read back first
    return written


def rewrite_group(
    table: Table, group: FileGroup, target_bytes: int, operation: str, data_path: str | None = None
) -> Rewrite:
    """Rewrite ``group``'s files into files of about ``target_bytes`` (under ``data_path``, default the
    table's), verified row for row by count and checksum before the commit that swaps them in.

    Raises:
        RewriteMismatchError: the new files read back differently; they are deleted, nothing is committed.
        FilesGoneError: another run replaced some of the files first; nothing is committed.
    """
    rows = _sorted(read_files(table, group.files))
    if rows.num_rows != group.rows:
        raise RewriteMismatchError(
            f"{table_name(table)} {group.day}: the files hold {rows.num_rows} rows, their metadata says {group.rows}; "
            "nothing was rewritten. Check those data files (a partial copy or a restored backup?) before compacting."
        )
    before = checksum(rows)
    bytes_per_row = max(group.size_bytes / max(group.rows, 1), 1.0)
    written = write_data_files(table, rows, max(int(target_bytes / bytes_per_row), 1), data_path)
    del rows
    try:
        after = read_files(table, written)
        if after.num_rows != group.rows or checksum(after) != before:
            raise RewriteMismatchError(
                f"{table_name(table)} {group.day}: the rewritten files read back {after.num_rows} rows with checksum "
                f"{checksum(after)}, not {group.rows} rows with {before}; nothing was committed"
            )
        del after
        snapshot = commit_replacement(table, group.files, written, operation, {PARTITION_KEY: group.day.isoformat()})
    except (RewriteMismatchError, FilesGoneError, MaintenanceConflictError):
        # Known not to be committed. After any other error the outcome may be unknown: the new files stay,
        # and the expiry job deletes them after the grace period if no snapshot took them.
        for data_file in written:
            table.io.delete(data_file.file_path)
        raise
    return Rewrite(
        table_name(table),
        group.day,
        len(group.files),
        group.size_bytes,
        group.rows,
        len(written),
        sum(data_file.file_size_in_bytes for data_file in written),
        before,
        snapshot.snapshot_id,
    )


def planned(table: Table, group: FileGroup) -> Rewrite:
    return Rewrite(table_name(table), group.day, len(group.files), group.size_bytes, group.rows)


def rewrite_groups(
    table: Table,
    groups: Sequence[FileGroup],
    target_bytes: int,
    operation: str,
    data_path: Callable[[date], str | None],
    dry_run: bool,
    progress: Progress,
    verbs: tuple[str, str],
) -> Iterator[Rewrite]:
    """Rewrite each group in turn (or only say what would be), reporting each on ``progress`` with ``verbs``
    (as in "would compact", "compacted")."""
    for index, group in enumerate(groups, start=1):
        if dry_run:
            done = planned(table, group)
            progress(f"[{index}/{len(groups)}] {done.describe(f'would {verbs[0]}')}")
            yield done
            continue
        try:
            done = rewrite_group(table, group, target_bytes, operation, data_path(group.day))
        except FilesGoneError:
            progress(f"[{index}/{len(groups)}] {planned(table, group).describe('skipped (another run took them)')}")
            continue
        progress(f"[{index}/{len(groups)}] {done.describe(verbs[1])}, checksum {done.checksum}")
        yield done


def is_cold(settings: Settings, day: date, today: date) -> bool:
    """Whether a day partition is past PLATFORM_RAW_HOT_DAYS (0: nothing is)."""
    return settings.raw_hot_days > 0 and day < today - timedelta(days=settings.raw_hot_days)


def last_finished_day(settings: Settings, now: datetime) -> date:
    """The newest day that ended PLATFORM_COMPACT_AFTER_HOURS before ``now``: no longer receiving data."""
    return (now - timedelta(hours=settings.compact_after_hours)).astimezone(UTC).date() - timedelta(days=1)


def compact_table(
    settings: Settings, table: Table, now: datetime, dry_run: bool = False, progress: Progress = print
) -> list[Rewrite]:
    """Compact the small files of the table's days that ended PLATFORM_COMPACT_AFTER_HOURS ago, and of the
    days still receiving data that hold PLATFORM_COMPACT_SMALL_FILES small files (a day past
    PLATFORM_RAW_HOT_DAYS is written to the cold location, where its other files are)."""
    target_bytes = settings.compact_target_mb * 1024 * 1024
    today = now.astimezone(UTC).date()
    cold = cold_data_path(settings, table)
    table.refresh()  # plan from the files it holds now
    groups = plan_compaction(table, target_bytes, last_finished_day(settings, now), settings.compact_small_files)
    return list(
        rewrite_groups(
            table,
            groups,
            target_bytes,
            "compact",
            lambda day: cold if is_cold(settings, day, today) else None,
            dry_run,
            progress,
            ("compact", "compacted"),
        )
    )


def compact_raw_tables(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress = print,
) -> list[Rewrite]:
    """Compact every raw event table (see :func:`compact_table`); tables not created yet are skipped."""
    catalog = catalog or load_catalog(settings)
    now = now or datetime.now(UTC)
    done: list[Rewrite] = []
    for event_type in event_types().values():
        table = open_raw_table(catalog, settings, event_type)
        if table is not None:
            done += compact_table(settings, table, now, dry_run, progress)
    return done


def days_due(settings: Settings, now: datetime, catalog: Catalog | None = None) -> dict[str, list[date]]:
    """The raw tables (by name) with day partitions that :func:`compact_raw_tables` would compact now."""
    catalog = catalog or load_catalog(settings)
    target_bytes = settings.compact_target_mb * 1024 * 1024
    last_day = last_finished_day(settings, now)
    found: dict[str, list[date]] = {}
    for event_type in event_types().values():
        table = open_raw_table(catalog, settings, event_type)
        if table is None:
            continue
        days = [
            day
            for day, small in sorted(small_files_by_day(table, target_bytes).items())
            if due_files(day, small, last_day, target_bytes, settings.compact_small_files)
        ]
        if days:
            found[table_name(table)] = days
    return found
