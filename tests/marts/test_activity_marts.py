"""The activity marts equal an independent recomputation from the generated events, row for row.

Each test rebuilds every column of a mart in plain Python from ``landed_marts.dataset.events`` (the
generator's event ids are unique, so nothing is deduplicated here) and compares the full sorted row
lists. Edge rules the generated data cannot reach (sessions without a session_id, window edges,
currencies without a rate) are proven by the dbt unit tests in ``_marts_activity.yml``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from tests.landed import LandedMarts

pytestmark = pytest.mark.integration

ACTIVITY_TYPES = frozenset({"user_visit", "add_to_cart", "checkout", "purchase"})
# The spec's fixed reference rates; the seed must hold exactly these.
EUR_PER_UNIT = {"EUR": Decimal("1.00"), "GBP": Decimal("1.17"), "USD": Decimal("0.92")}
CENT = Decimal("0.01")
ONE_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Activity:
    event_id: str
    event_type: str
    at: datetime
    user_id: str
    session_id: str
    payload: dict[str, Any]


def parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def duckdb_round(value: float, digits: int) -> float:
    """DuckDB's ``round(double, n)``: ``value * 10**n`` rounded half away from zero, divided back.

    Python's ``round`` rounds the exact binary value half to even and disagrees on about one quotient
    in a thousand, so an exact comparison has to round the way the SQL does.
    """
    scale = 10.0**digits
    return float(Decimal(value * scale).quantize(Decimal(1), ROUND_HALF_UP)) / scale


def in_eur(amount: Decimal, currency: str) -> Decimal:
    """One event's amount in EUR, rounded to cents half away from zero (the spec's per-event rule)."""
    return (amount * EUR_PER_UNIT[currency]).quantize(CENT, ROUND_HALF_UP)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def activity(landed_marts: LandedMarts) -> list[Activity]:
    """The activity events (reference data changes are not activity), by event time."""
    events = [
        Activity(e["event_id"], e["event_type"], parse(e["timestamp"]), e["user_id"], e["session_id"], e["payload"])
        for e in landed_marts.dataset.events
        if e["event_type"] in ACTIVITY_TYPES
    ]
    assert len({event.event_id for event in events}) == len(events)
    return sorted(events, key=lambda event: (event.at, event.event_id))


def rows(landed_marts: LandedMarts, sql: str) -> list[tuple[Any, ...]]:
    """Query rows with timestamps normalised to UTC datetimes, so failure diffs read like the expectations."""
    return [
        tuple(value.astimezone(UTC) if isinstance(value, datetime) else value for value in row)
        for row in landed_marts.query(sql)
    ]


def utc_dates(events: Iterable[Activity]) -> list[date]:
    moments = [event.at for event in events]
    return days_between(min(moments).date(), max(moments).date())


def test_events_per_minute_count_each_minute_and_the_15_minutes_ending_with_it(
    landed_marts: LandedMarts, activity: list[Activity]
) -> None:
    counts = Counter((event.at.replace(second=0, microsecond=0), event.event_type) for event in activity)
    expected = sorted(
        (
            minute,
            event_type,
            count,
            sum(counts.get((minute - back * ONE_MINUTE, event_type), 0) for back in range(15)),
        )
        for (minute, event_type), count in counts.items()
    )

    actual = rows(
        landed_marts,
        "select event_minute, event_type, event_count, rolling_15m_count "
        "from marts.fct_events_per_minute order by 1, 2",
    )

    assert actual == expected
    assert any(row[3] > row[2] for row in actual)  # the window really reaches back


def test_events_per_hour(landed_marts: LandedMarts, activity: list[Activity]) -> None:
    counts = Counter((event.at.replace(minute=0, second=0, microsecond=0), event.event_type) for event in activity)
    expected = sorted((hour, event_type, count) for (hour, event_type), count in counts.items())

    actual = rows(
        landed_marts, "select event_hour, event_type, event_count from marts.fct_events_per_hour order by 1, 2"
    )

    assert actual == expected


def test_sessions_are_the_client_sessions(landed_marts: LandedMarts, activity: list[Activity]) -> None:
    # Every generated event carries a session_id; the unit test covers the inactivity fallback.
    assert all(event.session_id for event in activity)
    by_session: dict[str, list[Activity]] = defaultdict(list)
    for event in activity:
        by_session[event.session_id].append(event)
    expected = []
    for session_id, events in by_session.items():
        started_at = min(event.at for event in events)
        ended_at = max(event.at for event in events)
        expected.append(
            (
                session_id,
                min((event.at, event.user_id) for event in events)[1],
                session_id,
                started_at,
                ended_at,
                ((ended_at - started_at) // timedelta(microseconds=1)) / 1_000_000,
                sum(event.event_type == "user_visit" for event in events),
                len(events),
                any(event.event_type == "purchase" for event in events),
            )
        )

    actual = rows(
        landed_marts,
        "select session_id, user_id, client_session_id, started_at, ended_at, duration_s, page_views, event_count, "
        "has_purchase "
        "from marts.fct_sessions order by 1",
    )

    assert actual == sorted(expected)
    assert any(row[8] for row in actual) and not all(row[8] for row in actual)


def test_daily_active_users_count_distinct_users_over_rolling_windows(
    landed_marts: LandedMarts, activity: list[Activity]
) -> None:
    users_on: dict[date, set[str]] = defaultdict(set)
    for event in activity:
        users_on[event.at.date()].add(event.user_id)

    def active(day: date, days: int) -> int:
        return len(set().union(*(users_on[day - timedelta(days=back)] for back in range(days))))

    expected = [
        (day, len(users_on[day]), active(day, 7), active(day, 28), active(day, 30)) for day in utc_dates(activity)
    ]

    actual = landed_marts.query(
        "select activity_date, dau, wau, mau, mau_30d from marts.fct_daily_active_users order by 1"
    )

    assert actual == expected
    assert actual[-1][2] < sum(row[1] for row in actual)  # returning users count once


def test_revenue_per_minute_in_eur(landed_marts: LandedMarts, activity: list[Activity]) -> None:
    revenue: defaultdict[datetime, Decimal] = defaultdict(Decimal)
    orders: Counter[datetime] = Counter()
    for event in activity:
        if event.event_type == "purchase":
            minute = event.at.replace(second=0, microsecond=0)
            revenue[minute] += in_eur(event.payload["revenue"], event.payload["currency"])
            orders[minute] += 1
    expected = sorted((minute, revenue[minute], orders[minute]) for minute in orders)

    actual = rows(landed_marts, "select event_minute, revenue_eur, orders from marts.fct_revenue_per_minute order by 1")

    assert actual == expected


def test_revenue_daily_in_eur_with_revenue_per_user(landed_marts: LandedMarts, activity: list[Activity]) -> None:
    revenue: defaultdict[date, Decimal] = defaultdict(Decimal)
    orders: Counter[date] = Counter()
    purchasers: dict[date, set[str]] = defaultdict(set)
    active_users: dict[date, set[str]] = defaultdict(set)
    for event in activity:
        day = event.at.date()
        active_users[day].add(event.user_id)
        if event.event_type == "purchase":
            revenue[day] += in_eur(event.payload["revenue"], event.payload["currency"])
            orders[day] += 1
            purchasers[day].add(event.user_id)

    def rate(amount: Decimal, users: int) -> float | None:
        return duckdb_round(float(amount) / users, 4) if users else None

    expected = [
        (
            day,
            revenue[day],
            orders[day],
            len(purchasers[day]),
            len(active_users[day]),
            rate(revenue[day], len(active_users[day])),
            rate(revenue[day], len(purchasers[day])),
        )
        for day in utc_dates(activity)
    ]

    actual = landed_marts.query(
        "select revenue_date, revenue_eur, orders, purchasers, active_users, arpu, arppu "
        "from marts.fct_revenue_daily order by 1"
    )

    assert actual == expected


def test_currency_rates_seed_holds_the_fixed_reference_rates(landed_marts: LandedMarts) -> None:
    assert dict(landed_marts.query("select currency, eur_per_unit from seeds.currency_rates")) == EUR_PER_UNIT


def test_each_mart_a_build_publishes_is_observed_with_its_published_rows(landed_marts: LandedMarts) -> None:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(landed_marts.settings.dagster_home_path))
    for name in ("fct_daily_active_users", "fct_sessions", "fct_funnel_daily"):
        records = instance.fetch_observations(dg.AssetKey(["marts", name]), limit=1).records
        assert records, f"marts/{name} was never observed"
        observation = records[0].asset_observation
        assert observation is not None
        (rows,) = landed_marts.query(f"select count(*) from marts.{name}")[0]
        assert observation.metadata["published_rows"].value == rows > 0
        # The build the step that built it published (later steps copy it unchanged).
        assert (landed_marts.marts.parent.parent / str(observation.metadata["build"].value)).is_dir()
    daily = instance.fetch_observations(dg.AssetKey(["marts", "fct_daily_active_users"]), limit=1).records[0]
    assert daily.asset_observation is not None  # the daily facts are the last step: the published build
    assert daily.asset_observation.metadata["build"].value == landed_marts.marts.parent.name
