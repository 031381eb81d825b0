"""The metrics the API serves: one per mart, its keyset order, its filters, and how to read a page of it.

Every mart has a unique key (the grain its YAML states), so rows are paged by that key in ascending
order (keyset pagination: ``where key > last key order by key limit n``), which stays correct and
fast however deep the page, unlike an offset. Filters are whitelisted per metric and every value is
a bound parameter: no input reaches the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from analytics_platform.exceptions import AccessDeniedError, InvalidRequestError, UnknownMetricError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# Filters a metric may offer; ``start``/``end`` bound its time column (start inclusive, end exclusive).
TIME_FILTERS = ("start", "end")


@dataclass(frozen=True)
class Metric:
    """A mart served as ``/v1/metrics/{name}``."""

    name: str
    relation: str  # schema.table in the published build
    description: str
    key: tuple[str, ...]  # the mart's grain: unique, and the keyset order
    time_column: str | None = None  # what ``start``/``end`` bound
    column_filters: tuple[str, ...] = ()  # equality filters: event_type, category, country, cohort
    country_column: str | None = None  # None: the mart cannot be split by country (refused to restricted keys)
    live: bool = False  # refreshed by the live follower between full builds (dbt tag ``live``)

    @property
    def filters(self) -> tuple[str, ...]:
        return (TIME_FILTERS if self.time_column else ()) + self.column_filters


# A filter's column in the mart, where its name differs (cohort: the signup week of cohort retention).
FILTER_COLUMNS = {"cohort": "signup_week"}

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "daily_active_users",
            "marts.fct_daily_active_users",
            "Daily, weekly and monthly active users per UTC day (DAU, WAU, MAU).",
            key=("activity_date",),
            time_column="activity_date",
        ),
        Metric(
            "events_per_minute",
            "marts.fct_events_per_minute",
            "Activity events per UTC minute and event type, with a rolling 15-minute count. Live.",
            key=("event_minute", "event_type"),
            time_column="event_minute",
            column_filters=("event_type",),
            live=True,
        ),
        Metric(
            "events_per_hour",
            "marts.fct_events_per_hour",
            "Activity events per UTC hour and event type.",
            key=("event_hour", "event_type"),
            time_column="event_hour",
            column_filters=("event_type",),
        ),
        Metric(
            "revenue_per_minute",
            "marts.fct_revenue_per_minute",
            "Revenue in EUR and orders per UTC minute with purchases. Live.",
            key=("event_minute",),
            time_column="event_minute",
            live=True,
        ),
        Metric(
            "revenue_daily",
            "marts.fct_revenue_daily",
            "Revenue in EUR, orders, purchasers, active users, ARPU and ARPPU per UTC day.",
            key=("revenue_date",),
            time_column="revenue_date",
        ),
        Metric(
            "funnel_daily",
            "marts.fct_funnel_daily",
            "Visit, cart, checkout and purchase users and step conversion rates per UTC day and category.",
            key=("activity_date", "category"),
            time_column="activity_date",
            column_filters=("category",),
        ),
        Metric(
            "category_conversion_daily",
            "marts.fct_category_conversion_daily",
            "Viewers, purchasers and conversion rate per UTC day and product category.",
            key=("activity_date", "category"),
            time_column="activity_date",
            column_filters=("category",),
        ),
        Metric(
            "product_conversion_daily",
            "marts.fct_product_conversion_daily",
            "Page views, add-to-carts (click-through), purchases and conversion per product and UTC day.",
            key=("activity_date", "product_id"),
            time_column="activity_date",
        ),
        Metric(
            "cohort_retention",
            "marts.fct_cohort_retention",
            "Cohort size, active users and retention per signup week and week since signup.",
            key=("signup_week", "weeks_since_signup"),
            time_column="signup_week",
            column_filters=("cohort",),
        ),
        Metric(
            "sessions",
            "marts.fct_sessions",
            "One row per session: user, country, start, end, duration, page views, events, purchase.",
            key=("started_at", "session_id"),
            time_column="started_at",
            column_filters=("country",),
            country_column="country",
        ),
        Metric(
            "errors_per_minute",
            "marts.fct_errors_per_minute",
            "App errors and the sessions they came from per UTC minute, client (event_source) and error code. Live.",
            key=("event_minute", "event_source", "error_code"),
            time_column="event_minute",
            live=True,
        ),
    )
}


@dataclass(frozen=True)
class Scope:
    """What a caller may see: every row, or the rows of some countries (row-level security)."""

    countries: frozenset[str] | None = None  # None: unrestricted

    @property
    def restricted(self) -> bool:
        return self.countries is not None

    def fingerprint(self) -> list[str] | None:
        return sorted(self.countries) if self.countries is not None else None


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    last_key: list[Any] | None  # the key of the last row when more rows follow, else None


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownMetricError(f"unknown metric {name!r}; metrics: {', '.join(METRICS)}") from None


def check_filters(metric: Metric, filters: dict[str, Any]) -> None:
    """Raise naming the filter and what the metric allows when ``filters`` asks for one it does not have."""
    for name, value in filters.items():
        if value is not None and name not in metric.filters:
            allowed = ", ".join(metric.filters) or "none"
            raise InvalidRequestError(
                f"metric {metric.name!r} has no filter {name!r}; its filters: {allowed} (and limit, cursor)"
            )
    start, end = filters.get("start"), filters.get("end")
    if start is not None and end is not None and start >= end:
        raise InvalidRequestError(
            f"start ({start}) must be before end ({end}): the range is start inclusive, end exclusive"
        )


def enforce_scope(metric: Metric, scope: Scope) -> None:
    if scope.restricted and metric.country_column is None:
        raise AccessDeniedError(
            f"metric {metric.name!r} is aggregated over every country, and this API key may only see rows of "
            f"{', '.join(sorted(scope.countries or ()))}; ask for a metric split by country "
            f"({', '.join(m.name for m in METRICS.values() if m.country_column)}) or a key without a country limit.",
            authenticated=True,
        )


def read_page(
    con: duckdb.DuckDBPyConnection,
    metric: Metric,
    filters: dict[str, Any],
    scope: Scope,
    after: list[Any] | None,
    limit: int,
) -> Page:
    """One page of ``metric`` in key order, after the key ``after`` (None: from the start).

    Every value is a bound parameter; the identifiers come from :data:`METRICS` only."""
    enforce_scope(metric, scope)
    conditions, parameters = [], []
    if metric.time_column is not None:
        if filters.get("start") is not None:
            conditions.append(f"{metric.time_column} >= ?")
            parameters.append(filters["start"])
        if filters.get("end") is not None:
            conditions.append(f"{metric.time_column} < ?")
            parameters.append(filters["end"])
    for name in metric.column_filters:
        if filters.get(name) is not None:
            conditions.append(f"{FILTER_COLUMNS.get(name, name)} = ?")
            parameters.append(filters[name])
    if scope.countries is not None:
        assert metric.country_column is not None  # enforce_scope refused the others
        conditions.append(f"{metric.country_column} in (select unnest(?::varchar[]))")
        parameters.append(sorted(scope.countries))
    if after is not None:
        if len(after) != len(metric.key):
            raise InvalidRequestError("the cursor does not match this metric's key; start again without it")
        conditions.append(f"({', '.join(metric.key)}) > ({', '.join('?' for _ in metric.key)})")
        parameters.extend(after)
    where = f"where {' and '.join(conditions)}" if conditions else ""
    order = ", ".join(metric.key)
    cursor = con.execute(f"select * from {metric.relation} {where} order by {order} limit ?", [*parameters, limit + 1])
    columns = [description[0] for description in cursor.description or ()]
    rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    last_key = [rows[-1][column] for column in metric.key] if more else None
    return Page([{name: _json_value(value) for name, value in row.items()} for row in rows], last_key)


def _json_value(value: Any) -> Any:
    """DuckDB values as JSON: decimals as numbers, times in ISO 8601."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
