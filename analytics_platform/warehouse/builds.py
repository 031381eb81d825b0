"""The DuckDB marts warehouse: one new file per dbt build, published by an atomic pointer swap.

DuckDB allows one writer per file, and rebuilding tables in place while a dashboard reads them makes
readers fail or see half-built state. So every build writes a fresh copy of the last published file
(``builds/<time>-<id>/warehouse.duckdb``), and only a successful build is published by atomically replacing
the symlink ``warehouse.duckdb``. Readers open the file the symlink resolves to, read-only, and reopen
when it changes: they never wait for a build and never see one in progress.

The build file exposes the raw Iceberg tables as views in schema ``raw``, each pinned to the table's
metadata file at build start, so every model of one build reads the same snapshot; the snapshot ids
are recorded in the file (``platform.raw_snapshot_pins``). The live facts (dbt tag ``live``) are the
exception: the live follower refreshes them between full builds (see ``defs/transform/live.py``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from opentelemetry.trace import Span
from pyiceberg.catalog import Catalog
from pyiceberg.table.snapshots import ancestors_of

from analytics_platform.contracts.envelope import event_types
from analytics_platform.contracts.types import duckdb_type
from analytics_platform.exceptions import TableNotFoundError, WarehouseFullError
from analytics_platform.lakehouse.snapshots import TRACEPARENT_KEY, properties
from analytics_platform.lakehouse.tables import (
    DEAD_LETTER_SCHEMA,
    DEAD_LETTER_TABLE,
    LINEAGE_SCHEMA,
    LINEAGE_TABLE,
    contract_for,
    open_table,
    raw_table_schema,
)
from analytics_platform.operations import tracing
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import (
    BUILD_FILE,
    PUBLISHED_NAME,
    configure_object_storage,
    current_build,
    duckdb_config,
    install_extensions,
    published_link,
)

KEEP_BUILDS = 3
# Which raw snapshots a build reflects, in the build itself: RAW_PINS are those its ``raw`` views read,
# LIVE_PINS those its live facts (dbt tag ``live``) were last brought up to (see defs/transform/live.py),
# MARTS_PINS those the last full or daily dbt build read (the other marts). The serving API reports them
# with each answer, with the newest event time of each pinned snapshot (SNAPSHOT_TIMES_TABLE).
PINS_SCHEMA = "platform"
PINS_TABLE = "raw_snapshot_pins"
SNAPSHOT_TIMES_TABLE = "raw_snapshot_times"
RAW_PINS = "raw_views"
LIVE_PINS = "live_facts"
MARTS_PINS = "marts"
# The view ``raw.table_snapshots``: the snapshots each raw table's pinned metadata keeps, with their summaries.
TABLE_SNAPSHOTS_VIEW = "table_snapshots"


def build_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """Serialise builds: each starts from the previous published file, so two at once would race."""
    return _file_lock(settings, "build.lock")


def publish_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """Serialise publishing: a build that copied the published file publishes only after bringing its
    live facts up to what was published since (the live follower publishes every few seconds)."""
    return _file_lock(settings, "publish.lock")


@contextlib.contextmanager
def _file_lock(settings: Settings, name: str) -> Iterator[None]:
    settings.duckdb_path.mkdir(parents=True, exist_ok=True)
    with (settings.duckdb_path / name).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# What the C library says for a full disk or an exhausted quota: also how DuckDB and dbt, which do not
# raise Python's OSError, report them.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXTS = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk is full: an ``OSError`` with
    ENOSPC/EDQUOT, or a DuckDB or dbt error whose message quotes it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(current) for text in DISK_FULL_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


def warehouse_full(settings: Settings, doing: str) -> WarehouseFullError:
    """The terminal error of a build that ran out of space while ``doing`` something."""
    return WarehouseFullError(
        f"no space left in {settings.duckdb_path} (PLATFORM_DUCKDB_DIR), where the marts builds are written: "
        f"{doing} failed. The build was discarded and the published marts are unchanged. Free space on that "
        "volume (a build needs room for a copy of the published file, and dbt's target folders live there too) "
        "or point PLATFORM_DUCKDB_DIR at a larger one, then build again."
    )


@contextlib.contextmanager
def _disk_full_is_terminal(settings: Settings, doing: str) -> Iterator[None]:
    """A full disk while writing builds fails the same way on every retry: raise it as WarehouseFullError."""
    try:
        yield
    except (OSError, duckdb.Error) as error:
        if is_disk_full(error):
            raise warehouse_full(settings, doing) from error
        raise


def prepare_build(settings: Settings, catalog: Catalog, as_of: datetime | None = None) -> Path:
    """A new build file: a copy of the published one, with ``raw`` views pinned to current snapshots
    (with ``as_of``, showing only the rows ingested by then: see :func:`pin_raw_views`).

    Raises:
        WarehouseFullError: no room on PLATFORM_DUCKDB_DIR for the copy or its views; nothing of the build is left.
    """
    with _disk_full_is_terminal(settings, "installing DuckDB's extensions"):
        install_extensions(settings)
    builds = settings.duckdb_path / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    # Every build file is named warehouse.duckdb (in its own folder): DuckDB names the catalog after the
    # file, and dbt writes that name into every view, so a copied build must keep it to stay valid.
    # ("marts" would clash with the schema of that name: `marts.fct_x` would be ambiguous.)
    folder = builds / f"{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    path = folder / BUILD_FILE
    previous = current_build(settings)
    try:
        if previous is not None:
            size = f"{previous.stat().st_size / 1e6:,.1f} MB"
            with _disk_full_is_terminal(settings, f"copying the published marts ({size}) into a new build"):
                shutil.copyfile(previous, path)
        with _disk_full_is_terminal(settings, "pinning the raw views in the new build"):
            pin_raw_views(settings, catalog, path, as_of)
    except BaseException:
        discard(path)  # a half-written copy would hold the space a later build needs
        raise
    return path


def pin_raw_views(settings: Settings, catalog: Catalog, build: Path, as_of: datetime | None = None) -> dict[str, int]:
    """Point the build's ``raw`` views at each raw table's current snapshot; returns the event tables'
    snapshot ids (0 for a table without one), also recorded in the build as its ``raw`` pins.

    Besides ``raw.<event type>`` and ``raw.dead_letter``: ``raw.ingest_snapshots`` (the summaries of expired
    raw snapshots, see :mod:`analytics_platform.lakehouse.lineage`) and ``raw.table_snapshots`` (those the
    pinned metadata still keeps), what the operations models read ingest runs from.
    A table that has no snapshot, or does not exist yet, is an empty view of its schema's shape.
    ``as_of``: the views show only rows ingested at or before it, which is what the tables held then
    (they are append-only), however long ago: snapshot history is expired, ``ingested_at`` is not."""
    schemas = {name: raw_table_schema(contract_for(settings, t)) for name, t in event_types().items()}
    schemas[DEAD_LETTER_TABLE] = DEAD_LETTER_SCHEMA
    schemas[LINEAGE_TABLE] = LINEAGE_SCHEMA
    pins = {}
    metadata: dict[str, str] = {}
    con = duckdb.connect(str(build), config=duckdb_config(settings))
    try:
        con.execute("load iceberg")
        configure_object_storage(con, settings)
        con.execute("create schema if not exists raw")
        for name, schema in schemas.items():
            try:
                table = open_table(catalog, settings, name)
            except TableNotFoundError:
                table = None
            snapshot = table.current_snapshot() if table is not None else None
            if table is None or snapshot is None:
                # iceberg_scan needs a snapshot; an empty table is an empty relation of the right shape.
                fields = (table.schema() if table is not None else schema).fields
                columns = ", ".join(f"null::{duckdb_type(field)} as {field.name}" for field in fields)
                con.execute(f"create or replace view raw.{name} as select {columns} where false")
            else:
                until = f" where ingested_at <= '{as_of.isoformat()}'::timestamptz" if as_of else ""
                con.execute(
                    f"create or replace view raw.{name} as "
                    f"select * from iceberg_scan('{table.metadata_location}'){until}"
                )
                if name != LINEAGE_TABLE:
                    metadata[name] = table.metadata_location
            if name not in (DEAD_LETTER_TABLE, LINEAGE_TABLE):
                pins[name] = snapshot.snapshot_id if snapshot else 0
        _create_table_snapshots_view(con, metadata)
        _record_pins(con, RAW_PINS, pins)
        if as_of is None:  # the newest event times are kept per snapshot: an as-of view would skew them
            _record_newest_event_times(con, pins)
    finally:
        con.close()
    return pins


def _create_table_snapshots_view(con: duckdb.DuckDBPyConnection, metadata: dict[str, str]) -> None:
    """``raw.table_snapshots``: one row per snapshot each raw table's pinned metadata file keeps (its commit
    time and summary: the ingest time, Dagster run, batch id, added records), read from that file itself.

    DuckDB's ``iceberg_snapshots()`` (extension 1.5.5) lists only sequence number, id, time, manifest list and
    operation, not the summary, so the view parses the metadata JSON (what ``iceberg_scan`` reads too; a few
    KB, as many snapshots as ``PLATFORM_RAW_SNAPSHOTS_KEPT`` keeps). Expired snapshots are in ``raw.ingest_snapshots``.
    """
    selects = [
        f"select '{name}' as table_name, unnest(json_extract(content, '$.snapshots[*]')) as snapshot "
        f"from read_text('{location}')"
        for name, location in metadata.items()
    ]
    columns = (
        "table_name, (snapshot->>'snapshot-id')::bigint as snapshot_id, "
        "to_timestamp((snapshot->>'timestamp-ms')::bigint / 1000) as committed_at, "
        "(snapshot->'summary')::varchar as summary"
    )
    relation = " union all ".join(selects) if selects else "select null::varchar as table_name, null::json as snapshot"
    where = "" if selects else " where false"
    con.execute(f"create or replace view raw.{TABLE_SNAPSHOTS_VIEW} as select {columns} from ({relation}){where}")


def _record_newest_event_times(con: duckdb.DuckDBPyConnection, pins: dict[str, int]) -> None:
    """The newest event time of each pinned snapshot not recorded yet (a column scan of ``event_at``), so
    that an answer can say how recent the events it reflects are. Rows no pin refers to are dropped."""
    con.execute(
        f"create table if not exists {PINS_SCHEMA}.{SNAPSHOT_TIMES_TABLE} "
        "(table_name varchar, snapshot_id bigint, newest_event_at timestamptz)"
    )
    known = set(con.execute(f"select table_name, snapshot_id from {PINS_SCHEMA}.{SNAPSHOT_TIMES_TABLE}").fetchall())
    for name, snapshot_id in pins.items():
        if snapshot_id and (name, snapshot_id) not in known:
            con.execute(
                f"insert into {PINS_SCHEMA}.{SNAPSHOT_TIMES_TABLE} select ?, ?, max(event_at) from raw.{name}",
                [name, snapshot_id],
            )
    pinned = f"from {PINS_SCHEMA}.{PINS_TABLE} p where p.table_name = t.table_name and p.snapshot_id = t.snapshot_id"
    con.execute(f"delete from {PINS_SCHEMA}.{SNAPSHOT_TIMES_TABLE} t where not exists (select 1 {pinned})")


def read_pins(build: Path, kind: str) -> dict[str, int] | None:
    """The raw snapshot ids a build recorded as ``kind`` (RAW_PINS or LIVE_PINS), or None if it has none."""
    with duckdb.connect(str(build), read_only=True) as con:
        if not con.execute(
            "select 1 from duckdb_tables() where schema_name = ? and table_name = ?", [PINS_SCHEMA, PINS_TABLE]
        ).fetchall():
            return None
        rows = con.execute(
            f"select table_name, snapshot_id from {PINS_SCHEMA}.{PINS_TABLE} where kind = ?", [kind]
        ).fetchall()
    return {name: int(snapshot_id) for name, snapshot_id in rows} or None


def record_pins(build: Path, kind: str, pins: dict[str, int]) -> None:
    with duckdb.connect(str(build)) as con:
        _record_pins(con, kind, pins)


def _record_pins(con: duckdb.DuckDBPyConnection, kind: str, pins: dict[str, int]) -> None:
    con.execute(f"create schema if not exists {PINS_SCHEMA}")
    con.execute(
        f"create table if not exists {PINS_SCHEMA}.{PINS_TABLE} (kind varchar, table_name varchar, snapshot_id bigint)"
    )
    con.execute(f"delete from {PINS_SCHEMA}.{PINS_TABLE} where kind = ?", [kind])
    con.executemany(
        f"insert into {PINS_SCHEMA}.{PINS_TABLE} values (?, ?, ?)", [(kind, name, pin) for name, pin in pins.items()]
    )


def build_id(build: Path) -> str:
    """A build's id: its folder's name (what the API reports as ``as_of.build``)."""
    return build.parent.name


def link_raw_batches(
    span: Span, settings: Settings, catalog: Catalog, previous: dict[str, int], pins: dict[str, int]
) -> None:
    """Link a build's span to the spans of the ingest batches that committed the raw snapshots it reads and
    ``previous`` (the pins of the build it started from) did not: newest first, at most MAX_LINKS in all.
    Each batch stored its span's context in its snapshot (``ingest.traceparent``)."""
    links = 0
    for name, pin in sorted(pins.items()):
        if not pin or pin == previous.get(name):
            continue
        table = open_table(catalog, settings, name)
        snapshot = table.snapshot_by_id(pin)
        if snapshot is None:
            continue
        for ancestor in ancestors_of(snapshot, table.metadata):
            if ancestor.snapshot_id == previous.get(name) or links >= tracing.MAX_LINKS:
                break
            attributes = {
                "analytics_platform.table": f"{settings.raw_namespace}.{name}",
                "analytics_platform.snapshot_id": str(ancestor.snapshot_id),
            }
            if (link := tracing.traceparent_link(properties(ancestor).get(TRACEPARENT_KEY), attributes)) is not None:
                span.add_link(link.context, link.attributes)
                links += 1


def drop_orphans(build: Path, expected: set[tuple[str, str]]) -> list[str]:
    """Drop the tables and views of the dbt-managed schemas (those of ``expected``, the (schema, name) of
    every model, snapshot and seed in the manifest) that the project no longer defines; returns them.

    A build starts as a copy of the published one, so a model that was renamed or deleted would live on
    in every later build, stale but still queryable by BI tools."""
    schemas = {schema for schema, _ in expected}
    dropped = []
    with duckdb.connect(str(build)) as con:
        relations = con.execute(
            "select schema_name, table_name, 'table' from duckdb_tables() "
            "union all select schema_name, view_name, 'view' from duckdb_views() where not internal"
        ).fetchall()
        for schema, name, kind in relations:
            if schema in schemas and (schema, name) not in expected:
                con.execute(f'drop {kind} if exists "{schema}"."{name}" cascade')
                dropped.append(f"{schema}.{name}")
    return sorted(dropped)


def publish(settings: Settings, build: Path) -> None:
    """Atomically point ``warehouse.duckdb`` at ``build`` and delete builds older than the last few."""
    link = published_link(settings)
    staging_link = link.with_name(f".{PUBLISHED_NAME}.{uuid.uuid4().hex}")
    with _disk_full_is_terminal(settings, "publishing the build"):
        staging_link.symlink_to(os.path.relpath(build, link.parent))
    os.replace(staging_link, link)  # rename(2) is atomic: readers see the old or the new build
    builds = sorted((settings.duckdb_path / "builds").glob(f"*/{BUILD_FILE}"), key=lambda p: p.stat().st_mtime)
    for old in builds[:-KEEP_BUILDS]:
        if old != build:
            discard(old)  # open readers keep their file until they close it


def discard(build: Path) -> None:
    build.unlink(missing_ok=True)
    Path(f"{build}.wal").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        build.parent.rmdir()
