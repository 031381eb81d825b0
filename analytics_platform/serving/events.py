"""Drill-down: every raw event and dead letter of one correlation id, with where each came from.

Raw lookups go to the Iceberg tables themselves (their current snapshots, not the marts build), read
by DuckDB's ``iceberg_scan`` on ``lake`` (a connection with the iceberg extension loaded, see
:func:`lake_connection`): the filters are pushed down to it, so it skips partitions and data files whose
statistics exclude them (12x faster than pyiceberg's scan in ``make bench``). Each row carries its Kafka
coordinates and the snapshot and Dagster run that landed it, found by its ``ingested_at`` however long
ago that was (:mod:`analytics_platform.lakehouse.lineage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import BuildGoneError, InvalidRequestError, TableNotFoundError
from analytics_platform.lakehouse.lineage import ingested_until, landings
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, open_raw_table, open_table
from analytics_platform.serving.metrics import Scope
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import configure_object_storage, duckdb_config, install_extensions

MAX_EVENTS = 10_000  # a journey has tens of events; more means a shared or synthetic correlation id
DEAD_LETTER_FIELDS = ("kafka_topic", "kafka_partition", "kafka_offset", "reason", "failed_checks", "ingested_at")


def lake_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that reads Iceberg tables (give each thread a ``cursor()`` of it)."""
    install_extensions(settings)
    lake = duckdb.connect(config=duckdb_config(settings))
    lake.execute("load iceberg")
    configure_object_storage(lake, settings)
    lake.execute("set global TimeZone = 'UTC'")
    return lake


@dataclass(frozen=True)
class Drill:
    correlation_id: str
    events: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    dead_letters_visible: bool
    snapshots: dict[str, int]  # the raw table snapshots read (0: none yet)


def events_by_correlation_id(
    lake: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    settings: Settings,
    correlation_id: str,
    scope: Scope,
    countries: duckdb.DuckDBPyConnection | None,
) -> Drill:
    """Every raw event carrying ``correlation_id`` across the raw tables, in event time order, and the
    dead letters whose bytes carry it. A country-limited ``scope`` sees only events of users who were
    in its countries at the event's time (from ``countries``, a connection to the published build's
    SCD2 user history) and no dead letters (their user is not known reliably)."""
    if not correlation_id.strip() or len(correlation_id) > 200:
        raise InvalidRequestError("correlation_id must be 1 to 200 characters")
    events: list[dict[str, Any]] = []
    snapshots: dict[str, int] = {}
    for name, event_type in sorted(event_types().items()):
        table = open_raw_table(catalog, settings, event_type)
        snapshot = table.current_snapshot() if table is not None else None
        snapshots[name] = snapshot.snapshot_id if snapshot else 0
        if table is None or snapshot is None:
            continue
        rows = lake.execute(
            "select * from iceberg_scan(?) where correlation_id = ? limit ?",
            [table.metadata_location, correlation_id, MAX_EVENTS],
        ).to_arrow_table()
        events += _events(lake, catalog, settings, name, table, rows)
    if scope.countries is not None:
        events = _within_countries(events, scope.countries, countries)
    events.sort(key=_position)
    dead_letters = _dead_letters_carrying(lake, catalog, settings, correlation_id) if scope.countries is None else []
    return Drill(correlation_id, events, dead_letters, scope.countries is None, snapshots)


def _dead_letters_carrying(
    lake: duckdb.DuckDBPyConnection, catalog: Catalog, settings: Settings, correlation_id: str
) -> list[dict[str, Any]]:
    """The dead letters whose bytes contain ``correlation_id``. The search runs in DuckDB on the bytes as
    escaped text (the id escaped the same way, by the same cast), so only candidates reach Python, which
    checks the bytes themselves."""
    try:
        table = open_table(catalog, settings, DEAD_LETTER_TABLE)
    except TableNotFoundError:
        return []
    if table.current_snapshot() is None:
        return []
    rows = lake.execute(
        f"select {', '.join(DEAD_LETTER_FIELDS)}, raw_value from iceberg_scan(?) "
        "where strpos(raw_value::varchar, ?::varchar) > 0",
        [table.metadata_location, needle := correlation_id.encode()],  # bytes: a BLOB parameter
    ).to_arrow_table()
    return [
        _json({field: row[field] for field in DEAD_LETTER_FIELDS} | {"raw_value": _text(row["raw_value"])})
        for row in rows.to_pylist()
        if needle in row["raw_value"]
    ]


def _events(
    lake: duckdb.DuckDBPyConnection, catalog: Catalog, settings: Settings, name: str, table: Table, rows: pa.Table
) -> list[dict[str, Any]]:
    """Raw rows of ``table`` as answers: Kafka coordinates, and the snapshot and Dagster run that landed
    each (found by its ``ingested_at``, kept past snapshot expiry by :mod:`~analytics_platform.lakehouse.lineage`)."""
    found = landings(lake, catalog, settings, table, set(rows.column("ingested_at").to_pylist()))
    events = []
    for row in rows.to_pylist():
        topic, partition, offset = row.pop("kafka_topic"), row.pop("kafka_partition"), row.pop("kafka_offset")
        landing = found.get(row["ingested_at"])
        landed_by = None
        if landing is not None:
            landed_by = {
                "snapshot_id": str(landing.snapshot_id),
                "snapshot_kept": landing.kept,
                "run_id": landing.run_id,
                "run_url": f"{settings.dagster_ui_url.rstrip('/')}/runs/{landing.run_id}" if landing.run_id else None,
            }
        events.append(
            _json(row)
            | {
                "table": f"{settings.raw_namespace}.{name}",
                "kafka": {"topic": topic, "partition": partition, "offset": offset},
                "landed_by": landed_by,
            }
        )
    return events


def _within_countries(
    events: list[dict[str, Any]], allowed: frozenset[str], con: duckdb.DuckDBPyConnection | None
) -> list[dict[str, Any]]:
    """The events whose user was in ``allowed`` countries at the event's time (the SCD2 version valid then)."""
    if not events or con is None:
        return []
    rows = con.execute(
        "select user_id, country, dbt_valid_from, dbt_valid_to from snapshots.snap_users "
        "where user_id in (select unnest(?::varchar[]))",
        [sorted({event["user_id"] for event in events})],
    ).fetchall()
    versions = [(user, country, _utc(start), _utc(end) if end else None) for user, country, start, end in rows]
    kept = []
    for event in events:
        at = datetime.fromisoformat(event["event_at"])
        country = next(
            (c for u, c, start, end in versions if u == event["user_id"] and start <= at and (end is None or at < end)),
            None,
        )
        if country in allowed:
            kept.append(event)
    return kept


def _position(event: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(event["event_at"]), event["event_id"]


def _utc(moment: datetime) -> datetime:
    """dbt snapshots store naive UTC timestamps."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", errors="replace") if value is not None else None


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return _text(value)
    return value


@dataclass(frozen=True)
class RowDrill:
    """How to find the raw events behind one row of a time-bucketed metric."""

    bucket: timedelta
    event_types: tuple[str, ...]  # the raw tables to read
    type_column: str | None = None  # a key column naming the row's event type, if the grain has one


ACTIVITY = ("user_visit", "add_to_cart", "checkout", "purchase")
ROW_DRILLS = {
    "events_per_minute": RowDrill(timedelta(minutes=1), ACTIVITY, "event_type"),
    "events_per_hour": RowDrill(timedelta(hours=1), ACTIVITY, "event_type"),
    "revenue_per_minute": RowDrill(timedelta(minutes=1), ("purchase",)),
    "revenue_daily": RowDrill(timedelta(days=1), ("purchase",)),
    "daily_active_users": RowDrill(timedelta(days=1), ACTIVITY),
}


@dataclass(frozen=True)
class AttributedDrill:
    """Rows of a per-product or per-category daily mart: which events count for a product or category
    depends on the product and user versions at each event's time, so the events are chosen by the
    build's own intermediate models (``sql``, with ``$start``, ``$end``, ``$day`` and ``$value``: the row's
    day and its product or category), then read from the raw snapshots that build read."""

    key_column: str
    sql: str


ATTRIBUTED_DRILLS = {
    # The product's page views and carts that day, and the purchases whose journey carted it.
    "product_conversion_daily": AttributedDrill(
        "product_id",
        """
        select event_id from intermediate.int_events_enriched
        where event_at >= $start and event_at < $end and product_id = $value
            and event_type in ('user_visit', 'add_to_cart')
        union
        select purchase_event_id from intermediate.int_purchased_carts
        where purchase_date = $day and product_id = $value
        """,
    ),
    # The category's product views that day (its viewers), and the purchases whose journey carted one
    # of its products (its purchasers), categories as of the view and the cart.
    "category_conversion_daily": AttributedDrill(
        "category",
        """
        select event_id from intermediate.int_events_enriched
        where event_at >= $start and event_at < $end and category = $value and event_type = 'user_visit'
        union
        select purchase_event_id from intermediate.int_purchased_carts
        where purchase_date = $day and category = $value
        """,
    ),
    # The funnel's first steps (the category's product views and carts; every page view and cart for
    # 'all'), and that day's checkouts and purchases of the users who took them: the events the steps
    # are counted from, before the funnel's ordering rule.
    "funnel_daily": AttributedDrill(
        "category",
        """
        with browse as (
            select event_id, user_id from intermediate.int_events_enriched
            where event_at >= $start and event_at < $end and event_type in ('user_visit', 'add_to_cart')
                and ($value = 'all' or category = $value)
        )
        select event_id from browse
        union
        select event_id from intermediate.int_events_enriched
        where event_at >= $start and event_at < $end and event_type in ('checkout', 'purchase')
            and user_id in (select user_id from browse)
        """,
    ),
}

DRILLABLE = (*ROW_DRILLS, *ATTRIBUTED_DRILLS)


@dataclass(frozen=True)
class RowEvents:
    events: list[dict[str, Any]]
    after: list[Any] | None  # (event_at, event_id) of the last event when more follow
    snapshots: dict[str, int]  # the snapshots read: later pages read the same ones


def events_behind_row(
    lake: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    settings: Settings,
    metric: str,
    key: list[str],
    limit: int,
    after: list[Any] | None = None,
    pinned: dict[str, int] | None = None,
) -> RowEvents:
    """One page, in (event_at, event_id) order, of the raw events one row of ``metric`` counts: those of
    its event type(s) in its time bucket. The bucket's bounds are pushed down to the Iceberg scan (the
    tables are partitioned by event day, and files carry event_at statistics). ``pinned`` snapshots
    (from a cursor) make later pages read exactly what the first one did."""
    drill = ROW_DRILLS.get(metric)
    if drill is None:
        raise InvalidRequestError(
            f"the raw events behind a row are available for {', '.join(DRILLABLE)}; {metric!r} is not among them"
        )
    expected = 2 if drill.type_column else 1
    if len(key) != expected:
        raise InvalidRequestError(
            f"a row of {metric} is named by {expected} key value(s) separated by commas "
            f"({'time bucket start, event type' if drill.type_column else 'time bucket start'}), got {len(key)}"
        )
    try:
        start = datetime.fromisoformat(key[0])
    except ValueError:
        raise InvalidRequestError(f"{key[0]!r} is not an ISO 8601 date or time (the row's bucket start)") from None
    start = _utc(start)
    types = drill.event_types
    if drill.type_column:
        if key[1] not in drill.event_types:
            raise InvalidRequestError(f"{key[1]!r} is not an activity event type ({', '.join(drill.event_types)})")
        types = (key[1],)
    lower = start if after is None else max(start, datetime.fromisoformat(after[0]))
    found, snapshots = _raw_events(lake, catalog, settings, types, (lower, start + drill.bucket), pinned)
    return _page(found, after, limit, snapshots)


def _raw_events(
    lake: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    settings: Settings,
    types: tuple[str, ...],
    window: tuple[datetime, datetime],
    pinned: dict[str, int] | None,
    event_ids: list[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The raw events of ``types`` in ``window`` (and among ``event_ids``), read at the ``pinned`` snapshots
    (default: each table's current one); also returns the snapshots read."""
    known = event_types()
    found: list[dict[str, Any]] = []
    snapshots: dict[str, int] = {}
    for name in types:
        table = open_raw_table(catalog, settings, known[name])
        current = table.current_snapshot() if table is not None else None
        snapshot_id = (pinned or {}).get(name) or (current.snapshot_id if current else 0)
        snapshots[name] = snapshot_id
        if table is None or not snapshot_id:
            continue
        query = "select * from iceberg_scan(?, snapshot_from_id => ?) where event_at >= ? and event_at < ?"
        parameters: list[Any] = [table.metadata_location, snapshot_id, *window]
        if table.snapshot_by_id(snapshot_id) is None:
            # Expired: the current snapshot up to its ingest time holds the same rows (append-only).
            until = ingested_until(lake, catalog, settings, snapshot_id, table)
            if until is None or current is None:
                raise BuildGoneError(
                    f"raw.{name} no longer keeps snapshot {snapshot_id}, which this query reads, and has no "
                    "record of it: request the first page again"
                )
            query += " and ingested_at <= ?"
            parameters = [table.metadata_location, current.snapshot_id, *window, until]
        if event_ids is not None:
            query += " and event_id in (select unnest(?::varchar[]))"
            parameters.append(event_ids)
        rows = lake.execute(query, parameters).to_arrow_table()
        found += _events(lake, catalog, settings, name, table, rows)
    return found, snapshots


def events_attributed_to_row(
    lake: duckdb.DuckDBPyConnection,
    build: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    settings: Settings,
    metric: str,
    key: list[str],
    raw_pins: dict[str, int],
    limit: int,
    after: list[Any] | None = None,
) -> RowEvents:
    """One page of the raw events one row of a per-product or per-category daily mart counts (see
    :data:`ATTRIBUTED_DRILLS`): chosen on the ``build`` connection, read at its ``raw_pins``."""
    drill = ATTRIBUTED_DRILLS[metric]
    if len(key) != 2:
        raise InvalidRequestError(f"a row of {metric} is named by its day and {drill.key_column}, got {key}")
    try:
        day = date.fromisoformat(key[0])
    except ValueError:
        raise InvalidRequestError(f"{key[0]!r} is not a date (YYYY-MM-DD): the row's day") from None
    start = datetime.combine(day, time(), UTC)
    window = (start, start + timedelta(days=1))
    given = {"start": window[0], "end": window[1], "day": day, "value": key[1]}
    chosen = build.execute(drill.sql, {name: v for name, v in given.items() if f"${name}" in drill.sql}).fetchall()
    event_ids = [event_id for (event_id,) in chosen]
    if after is not None:
        window = (max(window[0], datetime.fromisoformat(after[0])), window[1])
    found, snapshots = _raw_events(lake, catalog, settings, ACTIVITY, window, raw_pins, event_ids)
    return _page(found, after, limit, snapshots)


def _page(found: list[dict[str, Any]], after: list[Any] | None, limit: int, snapshots: dict[str, int]) -> RowEvents:
    found.sort(key=lambda event: (event["event_at"], event["event_id"]))
    if after is not None:
        found = [
            e
            for e in found
            if (datetime.fromisoformat(e["event_at"]), e["event_id"]) > (datetime.fromisoformat(after[0]), after[1])
        ]
    page = found[:limit]
    more = len(found) > limit
    return RowEvents(page, [page[-1]["event_at"], page[-1]["event_id"]] if more else None, snapshots)
