"""``/v1/metrics``: the marts, paged by key, filtered, limited to the caller's countries."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from analytics_platform.exceptions import InvalidRequestError, UnknownMetricError
from analytics_platform.serving import cursors
from analytics_platform.serving.access import ApiKey, Role
from analytics_platform.serving.api.deps import CallerDep, Services, ServicesDep
from analytics_platform.serving.api.models import ActivityType, Filters, MetricInfo, MetricList, MetricPage, Problem
from analytics_platform.serving.metrics import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    METRICS,
    Metric,
    check_filters,
    metric,
    read_page,
)
from analytics_platform.serving.published import AsOf

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
FRESHNESS_HEADER = "X-Data-Freshness-Seconds"
FRESHNESS_HEADER_SCHEMA = {
    "description": "Age in seconds of the newest event the answer reflects (absent before any event).",
    "schema": {"type": "string"},
}
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (400, 401, 403, 409, 422, 503)}


@router.get("", response_model=MetricList, responses=ERRORS)
def list_metrics(caller: CallerDep) -> MetricList:
    """Every metric, with its grain, filters and whether country-limited keys may read it."""
    caller.require(Role.viewer, "listing metrics")
    return MetricList(metrics=metric_infos())


def metric_infos() -> list[MetricInfo]:
    """What REST and GraphQL say of each metric."""
    return [
        MetricInfo(
            name=m.name,
            description=m.description,
            key=list(m.key),
            filters=list(m.filters),
            split_by_country=m.country_column is not None,
            live=m.live,
        )
        for m in METRICS.values()
    ]


FILTER_PARAMETERS = {
    name: inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    for name, annotation in {
        "start": Annotated[datetime | None, Query(description="Rows at or after this time (ISO 8601; UTC if naive).")],
        "end": Annotated[datetime | None, Query(description="Rows before this time (exclusive).")],
        "event_type": Annotated[ActivityType | None, Query(description="One activity event type.")],
        "category": Annotated[str | None, Query(min_length=1, max_length=100, description="One product category.")],
        "country": Annotated[str | None, Query(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code.")],
        "cohort": Annotated[date | None, Query(description="A signup cohort: the Monday (YYYY-MM-DD) of its week.")],
    }.items()
}
PAGE_PARAMETERS = [
    inspect.Parameter(
        "limit",
        inspect.Parameter.KEYWORD_ONLY,
        default=DEFAULT_LIMIT,
        annotation=Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")],
    ),
    inspect.Parameter(
        "cursor",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[str | None, Query(max_length=4000, description="`next_cursor` of the previous page.")],
    ),
]
CONTEXT_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
    for name, annotation in (
        ("request", Request),
        ("response", Response),
        ("state", ServicesDep),
        ("caller", CallerDep),
    )
]


def _add_metric_route(definition: Metric) -> None:
    """``GET /v1/metrics/<name>`` with exactly the metric's filters, so the OpenAPI schema states them."""

    async def endpoint(
        request: Request,
        response: Response,
        state: Services,
        caller: ApiKey,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        **filters: Any,
    ) -> Response:
        unknown = sorted(set(request.query_params) - {*definition.filters, "limit", "cursor"})
        if unknown:
            allowed = ", ".join([*definition.filters, "limit", "cursor"])
            raise InvalidRequestError(
                f"metric {definition.name!r} has no parameter {unknown[0]!r}; its parameters: {allowed}"
            )
        asked = filters_from(**filters)
        # Most pages are cache hits, answered here on the event loop; the rest (a query, or opening a
        # newly published build) go to the thread pool.
        answer = metric_answer(state, caller, definition.name, asked, limit, cursor, cached_only=True)
        if answer is None:
            answer = await run_in_threadpool(metric_answer, state, caller, definition.name, asked, limit, cursor)
        assert answer is not None
        freshness = answer.freshness_seconds()
        headers = {FRESHNESS_HEADER: f"{freshness:.3f}"} if freshness is not None else None
        return Response(answer.json, media_type="application/json", headers=headers)

    parameters = CONTEXT_PARAMETERS + [FILTER_PARAMETERS[name] for name in definition.filters] + PAGE_PARAMETERS
    endpoint.__signature__ = inspect.Signature(parameters, return_annotation=MetricPage)  # type: ignore[attr-defined]
    router.add_api_route(
        f"/{definition.name}",
        endpoint,
        methods=["GET"],
        response_model=MetricPage,
        responses=ERRORS | {200: {"headers": {FRESHNESS_HEADER: FRESHNESS_HEADER_SCHEMA}}},
        name=definition.name,
        operation_id=f"get_{definition.name}",
        summary=definition.description,
        description="One page of rows in key order; pass `next_cursor` back as `cursor` for the next page. Every "
        "page of one query reads the marts build its first page read (409 once it is no longer kept).",
    )


for _definition in METRICS.values():
    _add_metric_route(_definition)


@router.get("/{metric}", responses={404: {"model": Problem}}, include_in_schema=False)
def unknown_metric(metric: str) -> None:
    raise UnknownMetricError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")


@dataclass(frozen=True)
class Answer:
    """A page as answered: immutable (a build never changes once published), so it is cached and
    serialised once."""

    page: MetricPage
    json: bytes
    as_of: AsOf

    def freshness_seconds(self) -> float | None:
        return self.as_of.freshness_seconds(datetime.now(UTC))


def metric_page(
    state: Services, caller: ApiKey, name: str, asked: Filters, limit: int, cursor: str | None
) -> tuple[MetricPage, float | None]:
    """One page of metric ``name`` for ``caller`` and the age of its newest event: what REST and GraphQL
    both answer, under the same validation, cursor rules and row scope."""
    answer = metric_answer(state, caller, name, asked, limit, cursor)
    assert answer is not None
    return answer.page, answer.freshness_seconds()


def metric_answer(
    state: Services,
    caller: ApiKey,
    name: str,
    asked: Filters,
    limit: int,
    cursor: str | None,
    *,
    cached_only: bool = False,
) -> Answer | None:
    """The page's answer, from the cache or read from the build. ``cached_only``: None instead of any
    I/O (opening a build, querying it), so the event loop can answer cache hits itself."""
    caller.require(Role.viewer, "reading metrics")
    definition = metric(name)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    check_filters(definition, asked.given())
    scope = caller.scope
    if cursor is not None:
        position = cursors.decode(cursor, state.cursor_secret)
        if position.metric != definition.name:
            raise InvalidRequestError(f"this cursor pages metric {position.metric!r}, not {definition.name!r}")
        made_for = Filters.model_validate(position.filters)
        if asked.given() and asked != made_for:
            raise InvalidRequestError(
                "this cursor was made for other filters: repeat the first page's filters, or send only the cursor"
            )
        if position.scope != scope.fingerprint():
            raise InvalidRequestError(
                "this cursor was made for an API key that sees other countries; start again without it"
            )
        filters, after = made_for, position.after
        build = state.builds.opened(position.build) if cached_only else state.builds.pinned(position.build)
    else:
        filters, after = asked, None
        build = state.builds.current_if_open() if cached_only else state.builds.current()
    if build is None:
        return None
    filters_json = filters.model_dump(mode="json", exclude_none=True)
    key = (
        build.id,
        definition.name,
        json.dumps(filters_json, sort_keys=True),
        str(scope.fingerprint()),
        str(after),
        limit,
    )
    answer = state.pages.get(key)
    if answer is not None or cached_only:
        return answer
    as_of = build.as_of(definition.live)
    with build.cursor() as con:
        page = read_page(con, definition, filters.given(), scope, after, limit)
    next_cursor = None
    if page.last_key is not None:
        position = cursors.Cursor(definition.name, filters_json, scope.fingerprint(), build.id, page.last_key)
        next_cursor = cursors.encode(position, state.cursor_secret)
    validated = MetricPage.model_validate(
        {"metric": definition.name, "rows": page.rows, "next_cursor": next_cursor, "as_of": as_of.as_json()}
    )
    answer = Answer(validated, validated.model_dump_json().encode(), as_of)
    state.pages.put(key, answer, len(page.rows) + 1)
    return answer


def filters_from(**given: Any) -> Filters:
    try:
        return Filters(**given)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidRequestError(f"{first['loc'][0]}: {first['msg']}") from None
