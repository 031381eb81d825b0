"""``/graphql``: the same metrics and drill-down as REST, through the same functions (validation, cursors,
roles, row scope), with limits on query depth, aliases and size so one query cannot cost what thousands
would."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

import strawberry
from fastapi import Request
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import GraphQLRouter
from strawberry.scalars import JSON
from strawberry.types import Info

from analytics_platform.serving.access import ApiKey, Role
from analytics_platform.serving.api.deps import Services
from analytics_platform.serving.api.events import events_of_row, journey
from analytics_platform.serving.api.metrics import filters_from, metric_infos, metric_page
from analytics_platform.serving.api.pages import LocalGraphiQLRouter
from analytics_platform.serving.metrics import DEFAULT_LIMIT

MAX_DEPTH = 6
MAX_ALIASES = 10
MAX_TOKENS = 2000


@strawberry.type
class RawSnapshot:
    table: str
    snapshot_id: str = strawberry.field(description="Iceberg snapshot id (a string: it exceeds 2^53).")
    newest_event_at: datetime | None


@strawberry.type
class AsOf:
    build: str
    published_at: datetime
    raw: list[RawSnapshot]


@strawberry.type
class MetricPage:
    metric: str
    rows: list[JSON]
    next_cursor: str | None
    as_of: AsOf
    freshness_seconds: float | None = strawberry.field(description="Age of the newest event the page reflects.")


@strawberry.type
class MetricInfo:
    name: str
    description: str
    key: list[str]
    filters: list[str]
    split_by_country: bool
    live: bool


@strawberry.type
class TableSnapshot:
    table: str
    snapshot_id: str


@strawberry.type
class Journey:
    correlation_id: str
    events: list[JSON] = strawberry.field(description="Raw events with their Kafka offsets, landing snapshot and run.")
    dead_letters: list[JSON]
    dead_letters_visible: bool
    snapshots: list[TableSnapshot]


@strawberry.type
class RowEvents:
    metric: str
    row: str
    events: list[JSON] = strawberry.field(description="The raw events the row counts, in (event_at, event_id) order.")
    next_cursor: str | None
    snapshots: list[TableSnapshot]


def _snapshots(snapshots: dict[str, str]) -> list[TableSnapshot]:
    return [TableSnapshot(table=table, snapshot_id=snapshot) for table, snapshot in sorted(snapshots.items())]


@strawberry.input
class MetricFilters:
    start: datetime | None = None
    end: datetime | None = None
    event_type: str | None = None
    category: str | None = None
    country: str | None = None
    cohort: date | None = None


def _context_key(info: Info) -> tuple[Services, ApiKey]:
    request: Request = info.context["request"]
    services: Services = request.app.state.services
    header = request.headers.get("authorization", "")
    key = header.removeprefix("Bearer ").strip() if header.lower().startswith("bearer ") else None
    return services, services.keys.authenticate(key or request.headers.get("x-api-key"))


@strawberry.type
class Query:
    @strawberry.field(description="Every metric, with its grain and filters.")
    def metrics(self, info: Info) -> list[MetricInfo]:
        _, caller = _context_key(info)
        caller.require(Role.viewer, "listing metrics")
        return [MetricInfo(**info.model_dump()) for info in metric_infos()]

    @strawberry.field(description="One page of a metric in key order; pass nextCursor back as cursor.")
    def metric(
        self,
        info: Info,
        name: str,
        filters: MetricFilters | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> MetricPage:
        services, caller = _context_key(info)
        given: dict[str, Any] = {k: v for k, v in vars(filters).items() if v is not None} if filters else {}
        page, freshness = metric_page(services, caller, name, filters_from(**given), limit, cursor)
        return MetricPage(
            metric=page.metric,
            rows=cast(list[JSON], page.rows),
            next_cursor=page.next_cursor,
            as_of=AsOf(
                build=page.as_of.build,
                published_at=page.as_of.published_at,
                raw=[
                    RawSnapshot(table=t, snapshot_id=str(r.snapshot_id), newest_event_at=r.newest_event_at)
                    for t, r in sorted(page.as_of.raw.items())
                ],
            ),
            freshness_seconds=freshness,
        )

    @strawberry.field(description="Every raw event and dead letter with this correlation id (analyst keys).")
    def events(self, info: Info, correlation_id: str) -> Journey:
        services, caller = _context_key(info)
        found = journey(services, caller, correlation_id)
        return Journey(
            correlation_id=found.correlation_id,
            events=cast(list[JSON], found.events),
            dead_letters=cast(list[JSON], found.dead_letters),
            dead_letters_visible=found.dead_letters_visible,
            snapshots=_snapshots(found.snapshots),
        )

    @strawberry.field(description="One page of the raw events behind a row of a metric (analyst keys).")
    def row_events(
        self, info: Info, metric: str, row: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> RowEvents:
        services, caller = _context_key(info)
        page = events_of_row(services, caller, metric, row, limit, cursor)
        return RowEvents(
            metric=page.metric,
            row=page.row,
            events=cast(list[JSON], page.events),
            next_cursor=page.next_cursor,
            snapshots=_snapshots(page.snapshots),
        )


schema = strawberry.Schema(
    query=Query,
    extensions=[
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ],
)


def graphql_router() -> GraphQLRouter:
    return LocalGraphiQLRouter(schema, path="/graphql")
