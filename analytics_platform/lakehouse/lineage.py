"""Which snapshot and Dagster run landed a raw row, for as long as the row exists.

Every commit that lands rows records its Dagster run and its ingest time (the ``ingested_at`` of each
row it wrote) in its snapshot summary. Snapshot history is expired within minutes to keep commits fast
(``PLATFORM_RAW_SNAPSHOTS_KEPT``), so before a snapshot is expired its summary is appended to
``raw.ingest_snapshots``. A row's ``ingested_at`` then finds its snapshot and run however old it is, and a
query pinned to an expired snapshot can read the current one up to that snapshot's ingest time (raw
tables are append-only, so that is what the snapshot held).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, RUN_ID_KEY, expire_old_snapshots, properties
from analytics_platform.lakehouse.tables import LINEAGE_TABLE, ensure_lineage_table, table_identifier
from analytics_platform.settings import Settings


@dataclass(frozen=True)
class Landing:
    snapshot_id: int
    run_id: str | None
    kept: bool  # the table still keeps the snapshot (it can be read or time-travelled to)


def record_before_expiry(catalog: Catalog, settings: Settings, table: Table, expiring: list[Snapshot]) -> None:
    """Append the summaries of ``table``'s ``expiring`` snapshots that landed rows to ``raw.ingest_snapshots``.

    The table is shared by every topic's writer and only appended to, so pyiceberg's commit retries are
    safe here. Recording twice (an expiry that failed after the record) only adds a duplicate, which
    readers ignore. The lineage table's own history is expired too, without recording it."""
    rows = [
        {
            "table_name": table_identifier(settings, table.name()[-1]),
            "snapshot_id": snapshot.snapshot_id,
            "committed_at": datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC),
            "ingested_at": datetime.fromisoformat(props[INGESTED_AT_KEY]),
            "run_id": props.get(RUN_ID_KEY),
            "summary": json.dumps(props, sort_keys=True),
        }
        for snapshot in expiring
        if INGESTED_AT_KEY in (props := properties(snapshot))
    ]
    if not rows:
        return
    lineage = ensure_lineage_table(catalog, settings)
    lineage.append(pa.Table.from_pylist(rows, schema=lineage.schema().as_arrow()))
    expire_old_snapshots(lineage, settings.raw_snapshots_kept)


def landings(
    lake: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    settings: Settings,
    table: Table,
    ingested_at: set[datetime],
) -> dict[datetime, Landing]:
    """The snapshot (and run) that landed the rows ingested at each of ``ingested_at``: from the table's
    kept snapshots, else from ``raw.ingest_snapshots`` (read with DuckDB, the times pushed down)."""
    found: dict[datetime, Landing] = {}
    for snapshot in table.snapshots():
        props = properties(snapshot)
        if INGESTED_AT_KEY in props and (at := datetime.fromisoformat(props[INGESTED_AT_KEY])) in ingested_at:
            found[at] = Landing(snapshot.snapshot_id, props.get(RUN_ID_KEY), kept=True)
    missing = ingested_at - found.keys()
    if missing:
        for snapshot_id, run_id, at in _recorded(
            lake,
            catalog,
            settings,
            "ingested_at in (select unnest(?::timestamptz[]))",
            [sorted(missing)],
            table_identifier(settings, table.name()[-1]),
        ):
            found.setdefault(at, Landing(snapshot_id, run_id, kept=False))
    return found


def recorded_ingested_at(catalog: Catalog, settings: Settings, table: Table, snapshot_id: int) -> datetime | None:
    """The ingest time recorded for an expired snapshot of ``table`` (None: not recorded), read with
    pyiceberg (no DuckDB): what "days touched since" needs once the snapshot it knows is gone."""
    try:
        lineage = catalog.load_table(table_identifier(settings, LINEAGE_TABLE))
    except NoSuchTableError:
        return None
    if lineage.current_snapshot() is None:
        return None
    name = table_identifier(settings, table.name()[-1])
    row_filter = f"table_name = '{name}' and snapshot_id = {int(snapshot_id)}"
    times = lineage.scan(row_filter=row_filter, selected_fields=("ingested_at",)).to_arrow().column("ingested_at")
    return min(times.to_pylist()) if len(times) else None


def ingested_until(
    lake: duckdb.DuckDBPyConnection, catalog: Catalog, settings: Settings, snapshot_id: int, table: Table | None = None
) -> datetime | None:
    """The ingest time of an expired snapshot (of ``table``, or of any raw table): the rows it held are
    the current ones ingested at or before it. None if it was never recorded (it landed no rows, or it
    is unknown)."""
    name = table_identifier(settings, table.name()[-1]) if table is not None else None
    recorded = _recorded(lake, catalog, settings, "snapshot_id = ?", [snapshot_id], name)
    return recorded[0][2] if recorded else None


def _recorded(
    lake: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    settings: Settings,
    where: str,
    parameters: list[object],
    table_name: str | None,
) -> list[tuple[int, str | None, datetime]]:
    """(snapshot id, run id, ingested_at) of the recorded snapshots (of ``table_name``) matching ``where``."""
    try:
        lineage = catalog.load_table(table_identifier(settings, LINEAGE_TABLE))
    except NoSuchTableError:  # nothing was ever expired
        return []
    if lineage.current_snapshot() is None:
        return []
    if table_name is not None:
        where, parameters = f"table_name = ? and {where}", [table_name, *parameters]
    rows = lake.execute(
        "select snapshot_id, any_value(run_id), min(ingested_at) from iceberg_scan(?) "
        f"where {where} group by snapshot_id",
        [lineage.metadata_location, *parameters],
    ).fetchall()
    return [(int(snapshot_id), run_id, at) for snapshot_id, run_id, at in rows]
