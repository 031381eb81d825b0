"""Snapshot expiry and orphan files: what no snapshot references is deleted after a grace period.

Ingestion expires raw snapshots as it goes (``PLATFORM_RAW_SNAPSHOTS_KEPT``) without deleting a file, and
compaction and retention replace files without deleting them: a marts build pins each raw table's
metadata file when it starts and reads it for minutes, a query the API answers pins a snapshot. So the
files left behind (old data files, manifests, manifest lists, metadata files beyond the metadata log,
files of failed writes) are deleted here, in two steps:

1. A run lists every file under each table's location (and its cold location) and marks those that the
   current metadata does not reference, nor any metadata file that a DuckDB build on disk still pins,
   with the time it first saw them, in ``<table location>.pending-deletes.json`` next to the table.
2. A later run deletes the ones still unreferenced that were first seen ``PLATFORM_ORPHAN_GRACE_HOURS``
   ago or more. A file no longer referenced is never referenced again (commits add new paths), except a
   file being written for a commit in flight: files modified in the last IN_FLIGHT are never deleted.

With the default schedule (every 6 hours) a file goes between the grace period and 6 hours after it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyarrow.fs import FileSelector, FileType
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.lineage import record_before_expiry
from analytics_platform.lakehouse.maintenance import cold_data_path, table_name
from analytics_platform.lakehouse.snapshots import expire_old_snapshots
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, LINEAGE_TABLE, REPLAYS_TABLE, open_table
from analytics_platform.settings import Settings

IN_FLIGHT = timedelta(minutes=15)
PENDING_SUFFIX = ".pending-deletes.json"
_PINNED = re.compile(r"'([^']+\.metadata\.json)'")

Progress = Callable[[str], None]


@dataclass
class Cleanup:
    """What one table's expiry did (or, in a dry run, would do)."""

    table: str
    snapshots_expired: int = 0
    unreferenced: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_deleted: int = 0

    @property
    def waiting(self) -> int:
        """Unreferenced files whose grace period is not over yet."""
        return self.unreferenced - len(self.deleted)

    def describe(self, dry_run: bool) -> str:
        would = "would " if dry_run else ""
        return (
            f"{self.table}: {would}expire {self.snapshots_expired} snapshots, {would}delete {len(self.deleted)} "
            f"unreferenced files ({self.bytes_deleted / 1e6:,.1f} MB); {self.waiting} more wait for the grace period"
        )


@dataclass(frozen=True)
class _Listed:
    uri: str
    size: int
    modified: datetime


def normal_location(location: str) -> str:
    """A location without its scheme, as a file system lists it (``/abs/path``, ``bucket/key``)."""
    return PyArrowFileIO.parse_location(location)[2]


def pinned_metadata_files(settings: Settings) -> set[str]:
    """The metadata files the ``raw`` views of every DuckDB build on disk read (normalised locations).

    A build being written cannot be opened (DuckDB locks it): it was started minutes ago, well inside
    the grace period, so what it pins is not old enough to be deleted anyway."""
    import duckdb

    from analytics_platform.warehouse.connections import BUILD_FILE

    pinned: set[str] = set()
    for build in sorted((settings.duckdb_path / "builds").glob(f"*/{BUILD_FILE}")):
        try:
            with duckdb.connect(str(build), read_only=True) as con:
                views = con.execute("select sql from duckdb_views() where schema_name = 'raw'").fetchall()
        except duckdb.Error:
            continue
        for (sql,) in views:
            pinned |= {normal_location(location) for location in _PINNED.findall(sql or "")}
    return pinned


def _reachable(io: FileIO, metadata: TableMetadata, into: set[str], seen_manifests: set[str]) -> None:
    """Add every file ``metadata`` references, through each of its snapshots, to ``into``."""
    for snapshot in metadata.snapshots:
        into.add(normal_location(snapshot.manifest_list))
        for manifest in snapshot.manifests(io):
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            into.add(normal_location(manifest.manifest_path))
            # A file a snapshot deleted is in its manifests as deleted; its parent, if kept, has it as live.
            into |= {normal_location(entry.data_file.file_path) for entry in manifest.fetch_manifest_entry(io)}
    into |= {normal_location(log.metadata_file) for log in metadata.metadata_log}
    into |= {normal_location(statistics.statistics_path) for statistics in metadata.statistics}
    into |= {normal_location(statistics.statistics_path) for statistics in metadata.partition_statistics}


def referenced_files(table: Table, pinned: set[str]) -> set[str]:
    """Every file the table's current metadata references, and those of the metadata files in ``pinned``."""
    current = normal_location(table.metadata_location)
    referenced = {current}
    seen: set[str] = set()
    _reachable(table.io, table.metadata, referenced, seen)
    prefix = normal_location(table.location()).rstrip("/") + "/"
    for location in sorted(pinned):
        if not location.startswith(prefix) or location == current:
            continue
        try:
            metadata = FromInputFile.table_metadata(table.io.new_input(location_uri(table, location)))
        except FileNotFoundError:
            continue
        referenced.add(location)
        _reachable(table.io, metadata, referenced, seen)
    return referenced


def location_uri(table: Table, normal: str) -> str:
    scheme = PyArrowFileIO.parse_location(table.location())[0]
    return f"{scheme}://{normal}"


def _filesystem_io(table: Table) -> PyArrowFileIO:
    """A PyArrowFileIO with the table's properties, to list its locations (pyiceberg's FileIO cannot list).

    With PLATFORM_S3_SSE the catalog's FileIO is FsspecFileIO (see lakehouse/storage.py): listing and
    deleting need no encryption header, so a PyArrowFileIO of the same endpoint and credentials lists."""
    if isinstance(table.io, PyArrowFileIO):
        return table.io
    return PyArrowFileIO(properties=table.io.properties)


def list_files(table: Table, roots: list[str]) -> dict[str, _Listed]:
    """Every file under ``roots`` (locations), by normalised path."""
    io = _filesystem_io(table)
    found: dict[str, _Listed] = {}
    for root in roots:
        scheme, netloc, path = PyArrowFileIO.parse_location(root)
        filesystem = io.fs_by_scheme(scheme, netloc)
        for info in filesystem.get_file_info(FileSelector(path, recursive=True, allow_not_found=True)):
            if info.type == FileType.File:
                modified = datetime.fromtimestamp((info.mtime_ns or 0) / 1e9, UTC)
                found[info.path] = _Listed(f"{scheme}://{info.path}", info.size or 0, modified)
    return found


def _pending_location(table: Table) -> str:
    return table.location().rstrip("/") + PENDING_SUFFIX


def read_pending(table: Table) -> dict[str, datetime]:
    """When each unreferenced file was first seen (none if never recorded, or unreadable: grace restarts)."""
    source = table.io.new_input(_pending_location(table))
    try:
        with source.open() as stream:
            recorded = json.loads(stream.read())
        return {path: datetime.fromisoformat(seen) for path, seen in recorded["files"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}


def _write_pending(table: Table, pending: dict[str, datetime]) -> None:
    content = {"files": {path: seen.isoformat() for path, seen in sorted(pending.items())}}
    with table.io.new_output(_pending_location(table)).create(overwrite=True) as stream:
        stream.write(json.dumps(content, indent=1).encode())


def _expire(settings: Settings, catalog: Catalog, table: Table, now: datetime, dry_run: bool) -> int:
    """Expire old snapshots (metadata only); returns how many went (or would). Raw tables and the lineage
    keep PLATFORM_RAW_SNAPSHOTS_KEPT as ingestion does, recording raw ones in the lineage first; the dead-letter
    tables keep the grace period (ingestion looks up a dead-letter batch id in their history)."""
    name = table.name()[-1]
    snapshots = table.snapshots()
    if name in (DEAD_LETTER_TABLE, REPLAYS_TABLE):
        cutoff = now - timedelta(hours=settings.orphan_grace_hours)
        current = table.current_snapshot()
        current_id = current.snapshot_id if current is not None else None
        going = [s for s in snapshots if s.timestamp_ms < cutoff.timestamp() * 1000 and s.snapshot_id != current_id]
        if going and not dry_run:
            with contextlib.suppress(CommitFailedException):  # a concurrent commit: the next run expires them
                table.maintenance.expire_snapshots().older_than(cutoff).commit()
            return len(snapshots) - len(table.snapshots())
        return len(going)
    keep = settings.raw_snapshots_kept
    if len(snapshots) <= 2 * keep:
        return 0
    if dry_run:
        return len(snapshots) - keep
    if name == LINEAGE_TABLE:
        expire_old_snapshots(table, keep)
    else:
        expire_old_snapshots(table, keep, lambda expiring: record_before_expiry(catalog, settings, table, expiring))
    return len(snapshots) - len(table.snapshots())


def clean_table(
    settings: Settings,
    catalog: Catalog,
    table: Table,
    pinned: set[str],
    now: datetime,
    dry_run: bool = False,
) -> Cleanup:
    """Expire the table's old snapshots, then delete the files unreferenced for the grace period and
    record the newly unreferenced ones (see the module docstring). A dry run writes and deletes nothing."""
    cleanup = Cleanup(table_name(table), snapshots_expired=_expire(settings, catalog, table, now, dry_run))
    listed = list_files(table, [table.location(), cold_data_path(settings, table).removesuffix("/data")])
    table.refresh()  # after listing: a file committed meanwhile is then referenced
    referenced = referenced_files(table, pinned)
    previous = read_pending(table)
    pending: dict[str, datetime] = {}
    grace = timedelta(hours=settings.orphan_grace_hours)
    for path, found in sorted(listed.items()):
        if path in referenced:
            continue
        seen = previous.get(path, now)
        if now - seen >= grace and now - found.modified >= IN_FLIGHT:
            cleanup.deleted.append(found.uri)
            cleanup.bytes_deleted += found.size
        else:
            pending[path] = seen
    cleanup.unreferenced = len(pending) + len(cleanup.deleted)
    if not dry_run:
        for uri in cleanup.deleted:
            with contextlib.suppress(FileNotFoundError):
                table.io.delete(uri)
        if pending or previous:
            _write_pending(table, pending)
    return cleanup


def expire_and_clean(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress = print,
) -> list[Cleanup]:
    """:func:`clean_table` for every raw event table, the dead-letter tables and the ingest lineage."""
    catalog = catalog or load_catalog(settings)
    now = now or datetime.now(UTC)
    pinned = pinned_metadata_files(settings)
    names = [*event_types(), DEAD_LETTER_TABLE, REPLAYS_TABLE, LINEAGE_TABLE]
    done = []
    for index, name in enumerate(names, start=1):
        try:
            table = open_table(catalog, settings, name)
        except TableNotFoundError:
            continue
        cleanup = clean_table(settings, catalog, table, pinned, now, dry_run)
        progress(f"[{index}/{len(names)}] {cleanup.describe(dry_run)}")
        done.append(cleanup)
    return done
