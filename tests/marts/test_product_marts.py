"""Product marts (funnel, product CTR, cohort retention, category conversion) against the generated events.

Every expected row is computed here in plain Python from ``landed_marts.dataset``: categories as of each
event from the generator's version histories (``version_at``), the ordered funnel as a per-user state
machine rather than the mart's joins, and rates with DuckDB's rounding rule. Whole tables are compared.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from analytics_platform.sim.generator import Dataset, version_at
from tests.landed import LandedMarts

pytestmark = pytest.mark.integration

ACTIVITY_TYPES = ("user_visit", "add_to_cart", "checkout", "purchase")  # also the funnel's step order
ALL = "all"


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    at: datetime
    user_id: str
    correlation_id: str
    product_id: str | None
    category: str | None  # the product's category when the event happened

    @property
    def day(self) -> date:
        return self.at.date()  # timestamps are UTC


def activity_events(dataset: Dataset) -> list[Event]:
    events = []
    for event in dataset.events:
        if event["event_type"] not in ACTIVITY_TYPES:
            continue
        at = datetime.fromisoformat(event["timestamp"])
        product_id = event["payload"].get("product_id")
        version = version_at(dataset.product_versions[product_id], at) if product_id else None
        events.append(
            Event(
                event["event_id"],
                event["event_type"],
                at,
                event["user_id"],
                event["correlation_id"],
                product_id,
                version.category if version else None,
            )
        )
    return events


def rate(numerator: int, denominator: int) -> float | None:
    """DuckDB's ``round(numerator / denominator, 4)``: the double quotient, half away from zero."""
    if denominator == 0:
        return None
    scaled = numerator / denominator * 10_000
    whole = math.floor(scaled)
    return (whole + (scaled - whole >= 0.5)) / 10_000


def event_days(events: list[Event]) -> list[date]:
    """``dim_dates``: every day from the first to the last activity day."""
    first, last = min(e.day for e in events), max(e.day for e in events)
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def catalog_categories(dataset: Dataset) -> set[str]:
    return {version.category for versions in dataset.product_versions.values() for version in versions}


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def funnel_steps_reached(events: list[Event], funnel: str) -> int:
    """How far one user's day of events goes through one funnel, walking the events in time order.

    Events at the same instant are taken in step order, so they count as in order (the mart's "at or after").
    """
    reached = 0
    for event in sorted(events, key=lambda e: (e.at, ACTIVITY_TYPES.index(e.event_type))):
        if reached == len(ACTIVITY_TYPES) or event.event_type != ACTIVITY_TYPES[reached]:
            continue
        browsing = event.event_type in ("user_visit", "add_to_cart")
        if funnel == ALL or not browsing or event.category == funnel:
            reached += 1
    return reached


def expected_funnel(events: list[Event], days: list[date], categories: set[str]) -> list[tuple[Any, ...]]:
    user_days: dict[tuple[date, str], list[Event]] = defaultdict(list)
    for event in events:
        user_days[event.day, event.user_id].append(event)
    users_per_step: Counter[tuple[date, str, int]] = Counter()
    for (day, _), user_events in user_days.items():
        for funnel in [*categories, ALL]:
            for step in range(funnel_steps_reached(user_events, funnel)):
                users_per_step[day, funnel, step] += 1
    rows = []
    for day in days:
        for funnel in sorted([*categories, ALL]):
            visit, cart, checkout, purchase = (users_per_step[day, funnel, step] for step in range(4))
            rows.append(
                (
                    day,
                    funnel,
                    visit,
                    cart,
                    checkout,
                    purchase,
                    rate(cart, visit),
                    rate(checkout, cart),
                    rate(purchase, checkout),
                    rate(purchase, visit),
                )
            )
    return rows


def carted_before(events: list[Event]) -> dict[str, list[Event]]:
    """Per purchase event id: the add-to-carts of its journey (correlation_id) at or before it."""
    carts: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event.event_type == "add_to_cart":
            carts[event.correlation_id].append(event)
    return {
        purchase.event_id: [cart for cart in carts[purchase.correlation_id] if cart.at <= purchase.at]
        for purchase in events
        if purchase.event_type == "purchase"
    }


def expected_product_ctr(events: list[Event]) -> list[tuple[Any, ...]]:
    views: Counter[tuple[str | None, date]] = Counter(
        (e.product_id, e.day) for e in events if e.event_type == "user_visit" and e.product_id
    )
    carts: Counter[tuple[str | None, date]] = Counter(
        (e.product_id, e.day) for e in events if e.event_type == "add_to_cart"
    )
    purchase_carts = carted_before(events)
    purchases: Counter[tuple[str | None, date]] = Counter()
    for event in events:
        if event.event_type == "purchase":
            for product_id in {cart.product_id for cart in purchase_carts[event.event_id]}:
                purchases[product_id, event.day] += 1
    rows = []
    for product_id, day in views.keys() | carts.keys() | purchases.keys():
        viewed, carted, bought = views[product_id, day], carts[product_id, day], purchases[product_id, day]
        rows.append((product_id, day, viewed, carted, bought, rate(carted, viewed), rate(bought, viewed)))
    return sorted(rows)


def expected_category_conversion(events: list[Event], days: list[date], categories: set[str]) -> list[tuple[Any, ...]]:
    viewers: dict[tuple[date, str | None], set[str]] = defaultdict(set)
    purchasers: dict[tuple[date, str | None], set[str]] = defaultdict(set)
    purchase_carts = carted_before(events)
    for event in events:
        if event.event_type == "user_visit" and event.category:
            viewers[event.day, event.category].add(event.user_id)
        elif event.event_type == "purchase":
            for cart in purchase_carts[event.event_id]:
                purchasers[event.day, cart.category].add(event.user_id)
    return [
        (day, category, len(viewers[day, category]), len(purchasers[day, category]))
        + (rate(len(purchasers[day, category]), len(viewers[day, category])),)
        for day in days
        for category in sorted(categories)
    ]


def expected_cohort_retention(dataset: Dataset, events: list[Event], days: list[date]) -> list[tuple[Any, ...]]:
    signup_week = {
        user_id: monday(versions[-1].signed_up_at.date()) for user_id, versions in dataset.user_versions.items()
    }
    cohort_size = Counter(signup_week.values())
    active: dict[tuple[date, int], set[str]] = defaultdict(set)
    for event in events:
        cohort = signup_week.get(event.user_id)
        if cohort is not None and event.day >= cohort:
            active[cohort, (event.day - cohort).days // 7].add(event.user_id)
    data_weeks = sorted({monday(day) for day in days})
    rows = []
    for cohort, size in sorted(cohort_size.items()):
        for week in data_weeks:
            if week >= cohort:
                since = (week - cohort).days // 7
                rows.append((cohort, since, size, len(active[cohort, since]), rate(len(active[cohort, since]), size)))
    return rows


def test_funnel_counts_each_step_in_order_per_category_and_overall(landed_marts: LandedMarts) -> None:
    events = activity_events(landed_marts.dataset)
    actual = landed_marts.query(
        "select activity_date, category, visitors, cart_users, checkout_users, purchasers, visit_to_cart_rate, "
        "cart_to_checkout_rate, checkout_to_purchase_rate, visit_to_purchase_rate "
        "from marts.fct_funnel_daily order by activity_date, category"
    )
    expected = expected_funnel(events, event_days(events), catalog_categories(landed_marts.dataset))
    assert actual == expected
    # The order matters on this data: counted regardless of order, more users would check out per category
    # (e.g. a user who checked out after carting books, then carted toys later that day).
    carted = {(e.day, e.user_id, e.category) for e in events if e.event_type == "add_to_cart" and e.category}
    checked_out = {(e.day, e.user_id) for e in events if e.event_type == "checkout"}
    unordered_checkout_users = sum((day, user_id) in checked_out for day, user_id, _ in carted)
    assert sum(row[4] for row in expected if row[1] != ALL) < unordered_checkout_users


def test_product_ctr_counts_views_carts_and_the_purchases_of_carting_journeys(landed_marts: LandedMarts) -> None:
    events = activity_events(landed_marts.dataset)
    actual = landed_marts.query(
        "select product_id, activity_date, page_views, add_to_carts, purchases, add_to_cart_rate, conversion_rate "
        "from marts.fct_product_conversion_daily order by product_id, activity_date"
    )
    assert actual == expected_product_ctr(events)


def test_category_conversion_uses_categories_as_of_the_view_and_the_cart(landed_marts: LandedMarts) -> None:
    events = activity_events(landed_marts.dataset)
    actual = landed_marts.query(
        "select activity_date, category, viewers, purchasers, conversion_rate "
        "from marts.fct_category_conversion_daily order by activity_date, category"
    )
    assert actual == expected_category_conversion(events, event_days(events), catalog_categories(landed_marts.dataset))


def test_cohort_retention_counts_active_users_per_week_since_signup(landed_marts: LandedMarts) -> None:
    events = activity_events(landed_marts.dataset)
    actual = landed_marts.query(
        "select signup_week, weeks_since_signup, cohort_size, active_users, retention_rate "
        "from marts.fct_cohort_retention order by signup_week, weeks_since_signup"
    )
    assert actual == expected_cohort_retention(landed_marts.dataset, events, event_days(events))
