"""Erasure of one user (the right to be forgotten): raw rows, dead letters, history, marts, and an audit entry.

What goes, in order:

1. **Raw rows.** In every raw event table, each data file holding a row whose ``user_id`` (the field the
   schemas mark ``pii``) is the user is rewritten without those rows, in one maintenance commit per table
   (:func:`analytics_platform.lakehouse.maintenance.commit_replacement`): it names exactly the files it
   replaces, retries against concurrent ingestion, and repeats the newest Kafka offsets in its summary, so
   ingestion resumes where it was and re-lands nothing. An ingest batch that lost the race to it appends
   again on top (``append_alongside_maintenance``).
2. **Dead letters.** A dead letter holds the raw message, which may not parse: one is the user's if its Kafka
   key is the user id (producers key events by user) or its bytes contain the id as a JSON string
   (``"u000042"``, quotes included, so ``u0000421`` is not taken for ``u000042``).
3. **A seal.** A replacement commit lists the files it removed as deleted entries of a manifest, with their
   column bounds (a user id can be a file's lowest or highest); an empty commit after it drops that
   manifest from the table's current state.
4. **Marts.** The published DuckDB build is copied, the user's rows deleted from every table with a pii
   column (the dbt SCD2 snapshot ``snap_users`` is never rebuilt from raw, so deleting there is the only
   way), and published; then the ``refresh_marts`` job rebuilds every non-daily model and the daily facts of
   the days the user had events on, so aggregates no longer count the user; every older build file is
   deleted. The marts' Iceberg copies (``PLATFORM_MARTS_NAMESPACE``) are rewritten by that run.
5. **History.** Every snapshot older than the seal is expired, at once (not after ``PLATFORM_ORPHAN_GRACE_HOURS``),
   and each file only those snapshots referenced is deleted: the old data files holding the user, their
   manifests and manifest lists. Only files that were committed are deleted, never one a concurrent
   writer has not committed yet.
6. **Audit.** One row in the Iceberg table ``audit.erasures``: who, when, rows per table, the snapshots
   written and expired, the files deleted. The user id itself is not recorded; with PLATFORM_PII_KEY set
   its pseudonym is, so a later request can be matched to it.

Not covered: Kafka itself (events stay in the topics until their retention deletes them), analysts' own
dbt dev copies (``<home>/duckdb/dev``), and pseudonymized exports already handed out.
"""

from __future__ import annotations

import getpass
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import ConfigError, TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.compaction import read_files, write_data_files
from analytics_platform.lakehouse.expiry import location_uri, normal_location, referenced_files
from analytics_platform.lakehouse.lineage import record_before_expiry
from analytics_platform.lakehouse.maintenance import (
    COMMIT_ATTEMPTS,
    MAINTENANCE_KEY,
    FilesGoneError,
    MaintenanceConflictError,
    carried_offsets,
    cold_data_path,
    commit_replacement,
    table_name,
)
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, TABLE_PROPERTIES, open_table
from analytics_platform.security.pseudonymize import marked_pii_columns, pseudonym, schema_pii_names
from analytics_platform.settings import Settings
from analytics_platform.warehouse.builds import (
    BUILD_FILE,
    build_id,
    build_lock,
    discard,
    prepare_build,
    publish,
    publish_lock,
)
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.iceberg_marts import BUILD_ID_KEY

ERASURE_OPERATION = "erasure"
SEAL_OPERATION = "erasure-seal"
ERASURE_ID_KEY = "erasure.id"
AUDIT_NAMESPACE = "audit"
AUDIT_TABLE = "erasures"
AUDIT_SCHEMA = Schema(
    NestedField(1, "erasure_id", StringType(), required=True),
    NestedField(2, "requested_by", StringType(), required=True, doc="Who ran it (--requested-by, else the OS user)."),
    NestedField(3, "started_at", TimestamptzType(), required=True),
    NestedField(4, "finished_at", TimestamptzType(), required=True),
    NestedField(5, "subject", StringType(), required=False, doc="The user's pseudonym (PLATFORM_PII_KEY), if set."),
    NestedField(6, "rows_deleted", StringType(), required=True, doc="JSON: rows deleted per table."),
    NestedField(7, "snapshots_written", StringType(), required=True, doc="JSON: snapshot ids committed per table."),
    NestedField(8, "snapshots_expired", StringType(), required=True, doc="JSON: snapshot ids expired per table."),
    NestedField(9, "files_deleted", LongType(), required=True),
    NestedField(10, "marts_build", StringType(), required=False, doc="The build published without the user."),
)
_SCRUBBED_SCHEMAS_SKIPPED = ("platform",)  # the build's pins: snapshot ids and times, nobody's data


@dataclass
class TableErasure:
    """What erasure did to one Iceberg table."""

    table: str
    rows_deleted: int = 0
    files_replaced: int = 0
    snapshots_written: list[int] = field(default_factory=list)
    snapshots_expired: list[int] = field(default_factory=list)
    files_deleted: int = 0
    event_days: tuple[date, date] | None = None


@dataclass
class ErasureReport:
    """What :func:`erase_user` did, as recorded in ``audit.erasures``."""

    erasure_id: str
    requested_by: str
    started_at: datetime
    finished_at: datetime | None = None
    tables: dict[str, TableErasure] = field(default_factory=dict)
    marts_rows_deleted: dict[str, int] = field(default_factory=dict)
    marts_build: str | None = None
    builds_discarded: int = 0

    @property
    def raw_rows_deleted(self) -> int:
        return sum(t.rows_deleted for t in self.tables.values())


def erase_user(
    settings: Settings,
    user_id: str,
    *,
    requested_by: str | None = None,
    rebuild: Callable[[Settings, tuple[date, date] | None], None] | None = None,
    progress: Callable[[str], None] = print,
) -> ErasureReport:
    """Remove every trace of ``user_id`` from the lake and the marts and record it (see the module docstring).

    ``rebuild`` rebuilds the marts after the raw rows went, given the event days the user had rows on
    (default: the ``refresh_marts`` job over those days, through Dagster, as ``analytics-platform build`` does).
    Running it again for the same user finds nothing more to delete and records another audit entry.

    Raises:
        ConfigError: ``user_id`` is empty.
    """
    if not user_id.strip():
        raise ConfigError("erase-user needs the user's id (the events' user_id), not an empty string")
    catalog = load_catalog(settings)
    report = ErasureReport(uuid.uuid4().hex, requested_by or getpass.getuser(), datetime.now(UTC))
    seals: dict[str, Snapshot] = {}
    for name in [*sorted(event_types()), DEAD_LETTER_TABLE]:
        try:
            table = open_table(catalog, settings, name)
        except TableNotFoundError:
            continue
        done = _erase_table(settings, table, user_id, report.erasure_id)
        report.tables[done.table] = done
        # A table without the user keeps its history, unless an earlier erasure that stopped before
        # purging left its replaced files there (running erase-user again finishes the job).
        if done.rows_deleted or _erased_before(table):
            seals[name] = _seal(table, report.erasure_id, done)
        progress(f"{done.table}: {done.rows_deleted:,} rows deleted from {done.files_replaced} files")

    report.marts_rows_deleted = _scrub_published(settings, catalog, user_id)
    progress(f"marts: {sum(report.marts_rows_deleted.values()):,} rows deleted from the published build's tables")
    days = _event_days(report)
    (rebuild or _refresh_marts)(settings, days)
    published = current_build(settings)
    report.marts_build = build_id(published) if published is not None else None
    report.builds_discarded = _discard_older_builds(settings)
    progress(f"marts rebuilt ({report.marts_build}); {report.builds_discarded} older build files deleted")

    for name, seal in seals.items():
        table = open_table(catalog, settings, name)
        done = report.tables[table_name(table)]
        record = None if name == DEAD_LETTER_TABLE else _lineage_recorder(catalog, settings, table)
        done.snapshots_expired, done.files_deleted = _purge_history(table, seal, record)
    for table in _marts_tables(catalog, settings):
        done = TableErasure(table_name(table))
        seal = _seal(table, report.erasure_id, done, carried=_build_id_of)
        done.snapshots_expired, done.files_deleted = _purge_history(table, seal, None)
        report.tables[done.table] = done
    progress(
        f"history: {sum(len(t.snapshots_expired) for t in report.tables.values()):,} snapshots expired, "
        f"{sum(t.files_deleted for t in report.tables.values()):,} files deleted"
    )
    report.finished_at = datetime.now(UTC)
    record_audit(catalog, settings, report, user_id)
    return report


def raw_match(user_id: str) -> tuple[BooleanExpression, Callable[[pa.Table], pa.Array]]:
    return EqualTo(term=Reference("user_id"), value=literal(user_id)), lambda rows: pc.equal(rows["user_id"], user_id)


def dead_letter_match(user_id: str) -> tuple[BooleanExpression, Callable[[pa.Table], pa.Array]]:
    """A dead letter is the user's if keyed by the id or holding it as a JSON string (see the module docstring)."""

    def match(rows: pa.Table) -> pa.Array:
        keyed = pc.equal(rows["kafka_key"], pa.scalar(user_id.encode(), pa.binary()))
        quoted = pc.match_substring(rows["raw_value"], json.dumps(user_id))
        return pc.or_(pc.fill_null(keyed, False), pc.fill_null(quoted, False))

    return AlwaysTrue(), match


def _erase_table(settings: Settings, table: Table, user_id: str, erasure_id: str) -> TableErasure:
    """Rewrite the files of ``table`` holding the user's rows without them, in one maintenance commit.

    A concurrent compaction that replaced one of those files first makes the commit fail before anything
    changed (FilesGoneError): the files are looked up again, a few times."""
    row_filter, match = dead_letter_match(user_id) if table.name()[-1] == DEAD_LETTER_TABLE else raw_match(user_id)
    for attempt in range(1, 4):
        table.refresh()
        done = TableErasure(table_name(table))
        replaced, written, days = [], [], []
        cold = cold_data_path(settings, table)
        for task in table.scan(row_filter=row_filter).plan_files():
            rows = read_files(table, [task.file])
            hits = pc.fill_null(match(rows), False)
            found = int(pc.sum(hits).as_py() or 0)
            if not found:
                continue
            kept = rows.filter(pc.invert(hits))
            if "event_at" in rows.column_names:
                gone = pc.min_max(rows.filter(hits)["event_at"])
                days += [gone["min"].as_py().date(), gone["max"].as_py().date()]
            data_path = cold if normal_location(task.file.file_path).startswith(normal_location(cold)) else None
            if kept.num_rows:
                written += write_data_files(table, kept, kept.num_rows, data_path)
            replaced.append(task.file)
            done.rows_deleted += found
        if not replaced:
            return done
        try:
            snapshot = commit_replacement(table, replaced, written, ERASURE_OPERATION, {ERASURE_ID_KEY: erasure_id})
        except (FilesGoneError, MaintenanceConflictError):
            for data_file in written:
                table.io.delete(data_file.file_path)
            if attempt == 3:
                raise
            continue
        done.files_replaced = len(replaced)
        done.snapshots_written.append(snapshot.snapshot_id)
        done.event_days = (min(days), max(days)) if days else None
        return done
    raise AssertionError("unreachable")


def _erased_before(table: Table) -> bool:
    """Whether the table's history still holds an erasure commit (and so, before it, the erased rows)."""
    return any(
        snapshot.summary is not None
        and snapshot.summary.additional_properties.get(MAINTENANCE_KEY) == ERASURE_OPERATION
        for snapshot in table.snapshots()
    )


def _build_id_of(table: Table) -> dict[str, str]:
    current = table.current_snapshot()
    summary = current.summary.additional_properties if current is not None and current.summary else {}
    return {BUILD_ID_KEY: summary[BUILD_ID_KEY]} if BUILD_ID_KEY in summary else {}


def _seal(
    table: Table, erasure_id: str, done: TableErasure, carried: Callable[[Table], dict[str, str]] = carried_offsets
) -> Snapshot:
    """Commit an empty snapshot (with ``carried`` summary properties: the Kafka offsets) on top of the table;
    a fast append keeps no manifest holding only deleted entries, which still carry the erased files' bounds."""
    for attempt in range(COMMIT_ATTEMPTS):
        table.refresh()
        summary = {MAINTENANCE_KEY: SEAL_OPERATION, ERASURE_ID_KEY: erasure_id, **carried(table)}
        try:
            table.append(pa.Table.from_pylist([], schema=table.schema().as_arrow()), snapshot_properties=summary)
        except CommitFailedException:
            time.sleep(random.uniform(0.05, 0.2) * min(attempt + 1, 5))
            continue
        snapshot = table.current_snapshot()
        assert snapshot is not None
        done.snapshots_written.append(snapshot.snapshot_id)
        return snapshot
    raise MaintenanceConflictError(
        f"{table_name(table)} moved during each of {COMMIT_ATTEMPTS} attempts to seal the erasure; run erase-user again"
    )


def _lineage_recorder(catalog: Catalog, settings: Settings, table: Table) -> Callable[[list[Snapshot]], None]:
    return lambda expiring: record_before_expiry(catalog, settings, table, expiring)


def _purge_history(
    table: Table, seal: Snapshot, record: Callable[[list[Snapshot]], None] | None
) -> tuple[list[int], int]:
    """Expire every snapshot committed before ``seal`` and delete the files only they referenced; returns
    the expired ids and the number of files deleted. Every file deleted was committed (it was reachable
    from the table's metadata), so no concurrent writer's uncommitted file can be among them."""
    table.refresh()
    before = referenced_files(table, set())
    current = table.current_snapshot()
    kept = {seal.snapshot_id, current.snapshot_id if current is not None else seal.snapshot_id}
    expiring = [s for s in table.snapshots() if s.timestamp_ms <= seal.timestamp_ms and s.snapshot_id not in kept]
    if not expiring:
        return [], 0
    if record is not None:
        record(expiring)
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in expiring]).commit()
            break
        except CommitFailedException:
            table.refresh()
            time.sleep(random.uniform(0.05, 0.2) * min(attempt + 1, 5))
    else:
        raise MaintenanceConflictError(
            f"{table_name(table)} kept moving while expiring its history; run erase-user again"
        )
    table.refresh()
    unreferenced = sorted(before - referenced_files(table, set()))
    for path in unreferenced:
        try:
            table.io.delete(location_uri(table, path))
        except FileNotFoundError:
            continue
    return [s.snapshot_id for s in expiring], len(unreferenced)


def _event_days(report: ErasureReport) -> tuple[date, date] | None:
    bounds = [t.event_days for t in report.tables.values() if t.event_days is not None]
    if not bounds:
        return None
    return min(first for first, _ in bounds), max(last for _, last in bounds)


def _pii_columns(settings: Settings) -> Callable[[str, list[str]], list[str]]:
    by_name, marked = schema_pii_names(settings), marked_pii_columns()
    return lambda table, columns: [c for c in columns if c in by_name or c in marked.get(table, frozenset())]


def _scrub_published(settings: Settings, catalog: Catalog, user_id: str) -> dict[str, int]:
    """Publish a copy of the published build with the user's rows deleted from every table with a pii
    column (equal to the id, or starting ``<id>:`` as synthetic session ids do); returns rows per table."""
    if current_build(settings) is None:
        return {}
    pii = _pii_columns(settings)
    deleted: dict[str, int] = {}
    with build_lock(settings):
        build = prepare_build(settings, catalog)
        try:
            with duckdb.connect(str(build)) as con:
                tables = con.execute(
                    "select schema_name, table_name from duckdb_tables() where not internal order by all"
                ).fetchall()
                for schema, name in tables:
                    if schema in _SCRUBBED_SCHEMAS_SKIPPED:
                        continue
                    columns = [
                        c
                        for (c,) in con.execute(
                            "select column_name from duckdb_columns() where schema_name = ? and table_name = ? "
                            "and data_type = 'VARCHAR'",
                            [schema, name],
                        ).fetchall()
                    ]
                    if not (marked := pii(name, columns)):
                        continue
                    where = " or ".join(f'"{c}" = $id or starts_with("{c}", $id || \':\')' for c in marked)
                    row = con.execute(f'delete from "{schema}"."{name}" where {where}', {"id": user_id}).fetchone()
                    if row and row[0]:
                        deleted[f"{schema}.{name}"] = int(row[0])
            with publish_lock(settings):
                publish(settings, build)
        except BaseException:
            discard(build)
            raise
    return deleted


def _refresh_marts(settings: Settings, days: tuple[date, date] | None) -> None:
    from analytics_platform.local.orchestration import refresh_marts

    refresh_marts(settings, days, log_path=settings.home / "logs" / "erasure-build.log")


def _discard_older_builds(settings: Settings) -> int:
    """Delete every build file but the published one: each older one may still hold the user."""
    published = current_build(settings)
    older = [b for b in (settings.duckdb_path / "builds").glob(f"*/{BUILD_FILE}") if b != published]
    for build in older:
        discard(build)
    return len(older)


def _marts_tables(catalog: Catalog, settings: Settings) -> list[Table]:
    try:
        identifiers = catalog.list_tables(settings.marts_namespace)
    except NoSuchNamespaceError:  # no build exported its marts yet
        return []
    return [catalog.load_table(identifier) for identifier in identifiers]


def audit_table(catalog: Catalog) -> Table:
    """``audit.erasures``, created on first use."""
    identifier = f"{AUDIT_NAMESPACE}.{AUDIT_TABLE}"
    catalog.create_namespace_if_not_exists(AUDIT_NAMESPACE)
    return catalog.create_table_if_not_exists(identifier, schema=AUDIT_SCHEMA, properties=TABLE_PROPERTIES)


def record_audit(catalog: Catalog, settings: Settings, report: ErasureReport, user_id: str) -> None:
    """Append the report to ``audit.erasures`` (shared and only appended to: pyiceberg's retries are safe)."""
    key = settings.pii_key.get_secret_value().encode() if settings.pii_key is not None else None
    tables = report.tables.values()
    rows_deleted = {t.table: t.rows_deleted for t in tables} | report.marts_rows_deleted
    row = {
        "erasure_id": report.erasure_id,
        "requested_by": report.requested_by,
        "started_at": report.started_at,
        "finished_at": report.finished_at or datetime.now(UTC),
        "subject": pseudonym(user_id, key) if key else None,
        "rows_deleted": json.dumps(rows_deleted, sort_keys=True),
        "snapshots_written": json.dumps({t.table: t.snapshots_written for t in tables}, sort_keys=True),
        "snapshots_expired": json.dumps({t.table: t.snapshots_expired for t in tables}, sort_keys=True),
        "files_deleted": sum(t.files_deleted for t in tables),
        "marts_build": report.marts_build,
    }
    table = audit_table(catalog)
    table.append(pa.Table.from_pylist([row], schema=table.schema().as_arrow()))
