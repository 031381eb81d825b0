"""``/v1/events``: from a correlation id to every raw event and dead letter that carries it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from analytics_platform.exceptions import InvalidRequestError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.serving import cursors
from analytics_platform.serving.access import ApiKey, Role
from analytics_platform.serving.api.deps import CallerDep, Services, ServicesDep
from analytics_platform.serving.api.metrics import ERRORS
from analytics_platform.serving.events import (
    ATTRIBUTED_DRILLS,
    DRILLABLE,
    events_attributed_to_row,
    events_behind_row,
    events_by_correlation_id,
)
from analytics_platform.serving.metrics import DEFAULT_LIMIT, MAX_LIMIT, enforce_scope
from analytics_platform.serving.metrics import metric as metric_definition

router = APIRouter(prefix="/v1/events", tags=["drill-down"])
MAX_CORRELATION_ID = 200


class Events(BaseModel):
    correlation_id: str
    events: list[dict[str, Any]] = Field(
        description="Raw events in event time order: the envelope, the payload, `table`, `kafka` "
        "(topic, partition, offset) and `landed_by` (the Iceberg snapshot and Dagster run that landed it; "
        "null once the table no longer keeps that snapshot)."
    )
    dead_letters: list[dict[str, Any]] = Field(description="Messages rejected at ingestion whose bytes carry it.")
    dead_letters_visible: bool = Field(description="False for a country-limited key, which sees no dead letters.")
    snapshots: dict[str, str] = Field(description="The snapshot of each raw table that was read (0: none yet).")


@router.get("", response_model=Events, responses=ERRORS)
def events(
    state: ServicesDep,
    caller: CallerDep,
    correlation_id: Annotated[
        str, Query(min_length=1, max_length=MAX_CORRELATION_ID, description="The journey's correlation id.")
    ],
) -> Events:
    """Every raw event with this correlation id across the raw tables, and the dead letters carrying it."""
    return journey(state, caller, correlation_id)


def journey(state: Services, caller: ApiKey, correlation_id: str) -> Events:
    """What REST and GraphQL answer for a correlation id, under the same role and row scope."""
    caller.require(Role.analyst, "drilling down to raw events")
    if not 1 <= len(correlation_id) <= MAX_CORRELATION_ID:
        raise InvalidRequestError(f"correlation_id must be 1 to {MAX_CORRELATION_ID} characters")
    scope = caller.scope
    catalog = load_catalog(state.settings)
    with state.lake_cursor() as lake:
        if scope.countries is None:
            drill = events_by_correlation_id(lake, catalog, state.settings, correlation_id, scope, None)
        else:
            with state.builds.current().cursor() as con:
                drill = events_by_correlation_id(lake, catalog, state.settings, correlation_id, scope, con)
    return Events(
        correlation_id=drill.correlation_id,
        events=drill.events,
        dead_letters=drill.dead_letters,
        dead_letters_visible=drill.dead_letters_visible,
        snapshots={name: str(snapshot) for name, snapshot in drill.snapshots.items()},
    )


rows_router = APIRouter(prefix="/v1/metrics", tags=["drill-down"])
DrillableMetric = StrEnum("DrillableMetric", {name: name for name in DRILLABLE})  # type: ignore[misc]


class RowEventsPage(BaseModel):
    metric: str
    row: str
    events: list[dict[str, Any]] = Field(description="The raw events the row counts, in (event_at, event_id) order.")
    next_cursor: str | None
    snapshots: dict[str, str] = Field(description="The raw snapshots read; every page of one query reads these.")


@rows_router.get("/{metric}/rows/{row}/events", response_model=RowEventsPage, responses=ERRORS)
def row_events(
    metric: DrillableMetric,
    row: Annotated[str, Path(max_length=200, description="The row's key values, comma-separated, in key order.")],
    state: ServicesDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Events per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=4000, description="`next_cursor` of the previous page.")] = None,
) -> RowEventsPage:
    """The raw events behind one row of a per-minute, hourly or daily metric (e.g.
    `/v1/metrics/events_per_minute/rows/2026-11-01T10:05:00Z,purchase/events` or
    `/v1/metrics/funnel_daily/rows/2026-11-02,books/events`), paginated."""
    return events_of_row(state, caller, metric.value, row, limit, cursor)


def events_of_row(
    state: Services, caller: ApiKey, name: str, row: str, limit: int, cursor: str | None
) -> RowEventsPage:
    """What REST and GraphQL answer for a row's events, under the same role, scope and cursor rules."""
    caller.require(Role.analyst, "drilling down to raw events")
    if name not in DRILLABLE:
        raise InvalidRequestError(f"the raw events behind a row are available for {', '.join(DRILLABLE)}; not {name!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    enforce_scope(metric_definition(name), caller.scope)
    pinned, after, build_id = None, None, ""
    if cursor is not None:
        position = cursors.decode(cursor, state.cursor_secret)
        if position.metric != f"{name}/rows" or position.filters.get("row") != row:
            raise InvalidRequestError("this cursor pages the events of another row; start again without it")
        pinned, after = {k: int(v) for k, v in position.filters["snapshots"].items()}, position.after
        build_id = position.build
    catalog = load_catalog(state.settings)
    with state.lake_cursor() as lake:
        if name in ATTRIBUTED_DRILLS:
            # The build whose models chose the events (pinned by the cursor), read at its raw snapshots.
            build = state.builds.pinned(build_id) if build_id else state.builds.current()
            build_id = build.id
            raw_pins = {table: raw.snapshot_id for table, raw in build.as_of(live=False).raw.items()}
            with build.cursor() as con:
                page = events_attributed_to_row(
                    lake, con, catalog, state.settings, name, row.split(","), raw_pins, limit, after
                )
        else:
            page = events_behind_row(lake, catalog, state.settings, name, row.split(","), limit, after, pinned)
    next_cursor = None
    if page.after is not None:
        filters = {"row": row, "snapshots": {k: str(v) for k, v in page.snapshots.items()}}
        next_cursor = cursors.encode(
            cursors.Cursor(f"{name}/rows", filters, caller.scope.fingerprint(), build_id, page.after),
            state.cursor_secret,
        )
    return RowEventsPage(
        metric=name,
        row=row,
        events=page.events,
        next_cursor=next_cursor,
        snapshots={k: str(v) for k, v in page.snapshots.items()},
    )
