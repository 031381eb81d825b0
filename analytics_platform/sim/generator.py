"""Synthetic e-commerce traffic: users browse in sessions and flow through the purchase funnel.

Each session is one journey (one ``correlation_id``): a few page views, then with realistic drop-off
an add-to-cart, a checkout and a purchase. Given the same seed, start and size the stream is
byte-for-byte identical, so tests can recompute every metric from the generated events.

A few sessions also hit an error, which the client's error logging reports as an ``app_error``
event of the session (drawn from a random stream of their own, so the journeys are the same with or
without them).

With reference data (:func:`generate_dataset`) the stream also carries the catalog service's
``product_changed`` and the accounts service's ``user_profile_changed`` events, and both change
inside the window, so slowly changing dimensions and "as of event time" joins have something to get
wrong. Activity stays consistent with them: a cart line costs the product's price at that moment,
nobody browses before signing up, and delisted products are no longer viewed.

An :class:`Anomaly` injects one data-quality incident into a generated window (a volume drop or
spike, an error or dead-letter spike, a funnel dip, null-rate drift, undeclared fields), for the
anomaly checks of :mod:`analytics_platform.quality.anomalies` to find.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)

CATEGORIES = ("electronics", "books", "home", "fashion", "sports", "toys")
SOURCES = ("web", "ios", "android")
CURRENCIES = ("EUR", "USD", "GBP")
SCHEMA_VERSION = 1  # the generator writes events of each type's first schema version
PAYMENT_METHODS = ("card", "paypal", "apple_pay", "bank_transfer")
REFERRERS = (None, "google", "newsletter", "instagram", "direct")

# Funnel drop-off: probability of reaching the next step given the previous one.
P_ADD_TO_CART = 0.35
P_CHECKOUT = 0.55
P_PURCHASE = 0.7

# App errors: the share of sessions whose client reports an error, and what each source reports (code,
# message; a message names the page, so it varies too much to group by).
P_SESSION_ERROR = 0.03
APP_ERRORS: dict[str, tuple[tuple[str, str], ...]] = {
    "web": (
        ("NETWORK_TIMEOUT", "request for {page} timed out after 10 s"),
        ("HTTP_500", "{page}: the server answered 500 Internal Server Error"),
        ("JS_TYPE_ERROR", "TypeError: cannot read properties of undefined (reading 'price') on {page}"),
        ("IMAGE_LOAD_FAILED", "an image on {page} failed to load"),
    ),
    "ios": (
        ("NETWORK_TIMEOUT", "request for {page} timed out after 10 s"),
        ("HTTP_500", "{page}: the server answered 500 Internal Server Error"),
        ("IMAGE_LOAD_FAILED", "an image on {page} failed to load"),
        ("APP_NOT_RESPONDING", "the main thread was blocked for 5 s on {page}"),
    ),
}
APP_ERRORS["android"] = APP_ERRORS["ios"]
APP_ERROR_WEIGHTS = (40, 25, 20, 15)
# The page an app error of a funnel step is reported from (page views report their own page).
STEP_PAGES = {"add_to_cart": "/cart", "checkout": "/checkout", "purchase": "/checkout/confirm"}

# Reference data. The catalog prices in one currency, so with reference data every order is in it too.
CATALOG_CURRENCY = "EUR"
CATALOG_SOURCE = "catalog"  # also the user_id of product changes: one Kafka key keeps them in order
ACCOUNTS_SOURCE = "accounts"
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "PL", "SE", "AT")
COUNTRY_WEIGHTS = (25, 15, 10, 10, 10, 10, 8, 5, 4, 3)
PLANS = ("free", "plus", "pro")
PLAN_WEIGHTS = (70, 20, 10)
MARKETING_CHANNELS = ("organic", "paid_search", "social", "referral", "email")
MARKETING_CHANNEL_WEIGHTS = (40, 25, 15, 10, 10)
SIGNUP_HISTORY = timedelta(days=28)  # users who signed up before the window did so at most this long before
CATALOG_LEAD = timedelta(days=1)  # the initial catalog is published this long before the window
# Shares of users and products whose reference data changes inside the window (exact counts, rounded).
SIGNUP_IN_WINDOW_SHARE = 0.2
PLAN_CHANGE_SHARE = 0.08
COUNTRY_CHANGE_SHARE = 0.03
PRICE_CHANGE_SHARE = 0.10
CATEGORY_CHANGE_SHARE = 0.05
DELIST_SHARE = 0.03
MAX_LATE_FRACTION = 0.5
_ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Product:
    """A product as first listed; with reference data its later states are in ``product_versions``."""

    product_id: str
    category: str
    price: Decimal


@dataclass(frozen=True)
class ProductVersion:
    """A product's catalog entry from ``valid_from`` until its next version (one ``product_changed`` event)."""

    valid_from: datetime
    name: str
    category: str
    price: Decimal
    is_active: bool


@dataclass(frozen=True)
class UserVersion:
    """A user's profile from ``valid_from`` until its next version (one ``user_profile_changed`` event)."""

    valid_from: datetime
    signed_up_at: datetime
    country: str
    plan: str
    marketing_channel: str


@dataclass(frozen=True)
class Dataset:
    """A generated stream and the reference data behind it, so tests can compute expected values.

    ``events`` is in delivery order: on-time events by timestamp, then the late ones (``late_event_ids``)
    by timestamp. Each version history is ordered by ``valid_from``; its first version is the
    product's listing or the user's signup.
    """

    events: list[dict[str, Any]]
    product_versions: dict[str, list[ProductVersion]]
    user_versions: dict[str, list[UserVersion]]
    late_event_ids: frozenset[str]


class _Versioned(Protocol):
    @property
    def valid_from(self) -> datetime: ...


VersionT = TypeVar("VersionT", bound=_Versioned)


def version_at(versions: Sequence[VersionT], moment: datetime) -> VersionT | None:
    """The version valid at ``moment`` (the last with ``valid_from <= moment``); None before the first."""
    for version in reversed(versions):
        if version.valid_from <= moment:
            return version
    return None


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and a ``Z`` suffix, as on the wire."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _whole_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _product_name(index: int, category: str) -> str:
    return f"Product {index} ({category})"


class EventGenerator:
    """Deterministic source of sessions; ``users`` and ``products`` scale the simulated shop.

    Until :meth:`plan_reference_data` runs, anyone may browse at any time and products never change
    (``live_sessions`` works that way). After it, ``product_versions`` and ``user_versions`` hold every
    product's and user's history and sessions follow them.
    """

    def __init__(self, seed: int = 42, users: int = 5_000, products: int = 200) -> None:
        self.rng = random.Random(seed)
        self.error_rng = random.Random(f"app_error:{seed}")  # app errors never shift the journeys
        self.user_ids = [f"u{index:06d}" for index in range(users)]
        self.products = [
            Product(
                product_id=f"p{index:04d}",
                category=self.rng.choice(CATEGORIES),
                price=Decimal(self.rng.randrange(199, 49_999)) / 100,
            )
            for index in range(products)
        ]
        # Zipf-like activity: a minority of users come back often, as in real traffic.
        self._user_cum_weights = list(itertools.accumulate(1 / (rank + 10) for rank in range(users)))
        self.product_versions: dict[str, list[ProductVersion]] = {}
        self.user_versions: dict[str, list[UserVersion]] = {}

    def _uuid(self, rng: random.Random | None = None) -> str:
        return str(uuid.UUID(int=(rng or self.rng).getrandbits(128), version=4))

    def _moment(self, after: datetime, before: datetime) -> datetime:
        """A random moment in [after, before) on a whole millisecond.

        Timestamps travel with millisecond precision; on whole milliseconds, comparing a version's
        ``valid_from`` with an event's wire timestamp gives the same answer as comparing the datetimes.
        """
        after = _whole_ms(after)
        return after + self.rng.randrange(max(1, (before - after) // _ONE_MS)) * _ONE_MS

    def _share(self, population: Sequence[str], share: float) -> set[str]:
        return set(self.rng.sample(population, k=round(share * len(population))))

    def plan_reference_data(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Give every product and user a version history with changes inside [start, end); their events.

        Sessions must then start inside the window: before it, no catalog is listed to browse.
        """
        return self._plan_products(start, end) + self._plan_users(start, end)

    def _plan_products(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        product_ids = [p.product_id for p in self.products]
        changes: dict[str, list[tuple[datetime, str]]] = {product_id: [] for product_id in product_ids}
        for kind, share in (
            ("price", PRICE_CHANGE_SHARE),
            ("category", CATEGORY_CHANGE_SHARE),
            ("delist", DELIST_SHARE),
        ):
            for product_id in sorted(self._share(product_ids, share)):
                changes[product_id].append((self._moment(start, end), kind))
        listed_at = _whole_ms(start - CATALOG_LEAD)
        events = []
        for index, product in enumerate(self.products):
            name = _product_name(index, product.category)
            versions = [ProductVersion(listed_at, name, product.category, product.price, is_active=True)]
            for moment, kind in sorted(changes[product.product_id], key=lambda change: change[0]):
                current = versions[-1]
                if kind == "price":
                    percent = rng.randint(10, 40) * rng.choice((-1, 1))
                    price = (current.price * (100 + percent) / 100).quantize(Decimal("0.01"))
                    new = replace(current, valid_from=moment, price=price)
                elif kind == "category":
                    category = rng.choice([c for c in CATEGORIES if c != current.category])
                    # The shop shows the category in the name, so a recategorised product is renamed too.
                    new = replace(current, valid_from=moment, category=category, name=_product_name(index, category))
                else:
                    new = replace(current, valid_from=moment, is_active=False)
                if moment == current.valid_from:  # two changes in one millisecond are one version
                    versions[-1] = new
                else:
                    versions.append(new)
            self.product_versions[product.product_id] = versions
            events += [
                self._reference_event(
                    "product_changed",
                    CATALOG_SOURCE,
                    CATALOG_SOURCE,
                    version.valid_from,
                    {
                        "product_id": product.product_id,
                        "name": version.name,
                        "category": version.category,
                        "price": version.price,
                        "currency": CATALOG_CURRENCY,
                        "is_active": version.is_active,
                    },
                )
                for version in versions
            ]
        return events

    def _plan_users(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        signs_up_in_window = self._share(self.user_ids, SIGNUP_IN_WINDOW_SHARE)
        changes_plan = self._share(self.user_ids, PLAN_CHANGE_SHARE)
        changes_country = self._share(self.user_ids, COUNTRY_CHANGE_SHARE)
        events = []
        for user_id in self.user_ids:
            signed_up_at = (
                self._moment(start, end)
                if user_id in signs_up_in_window
                else self._moment(start - SIGNUP_HISTORY, start)
            )
            versions = [
                UserVersion(
                    valid_from=signed_up_at,
                    signed_up_at=signed_up_at,
                    country=rng.choices(COUNTRIES, weights=COUNTRY_WEIGHTS)[0],
                    plan=rng.choices(PLANS, weights=PLAN_WEIGHTS)[0],
                    marketing_channel=rng.choices(MARKETING_CHANNELS, weights=MARKETING_CHANNEL_WEIGHTS)[0],
                )
            ]
            changes = [
                kind for kind, chosen in (("plan", changes_plan), ("country", changes_country)) if user_id in chosen
            ]
            moments = sorted(self._moment(max(start, signed_up_at + _ONE_MS), end) for _ in changes)
            for moment, kind in zip(moments, changes, strict=True):
                current = versions[-1]
                if kind == "plan":
                    new = replace(current, valid_from=moment, plan=rng.choice([p for p in PLANS if p != current.plan]))
                else:
                    country = rng.choice([c for c in COUNTRIES if c != current.country])
                    new = replace(current, valid_from=moment, country=country)
                if moment == current.valid_from:  # two changes in one millisecond are one version
                    versions[-1] = new
                else:
                    versions.append(new)
            self.user_versions[user_id] = versions
            events += [
                self._reference_event(
                    "user_profile_changed",
                    ACCOUNTS_SOURCE,
                    user_id,
                    version.valid_from,
                    {
                        "signed_up_at": format_timestamp(version.signed_up_at),
                        "country": version.country,
                        "plan": version.plan,
                        "marketing_channel": version.marketing_channel,
                    },
                )
                for version in versions
            ]
        return events

    def _reference_event(
        self, event_type: str, source: str, user_id: str, moment: datetime, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """A service's change event: the service is its own session, each change its own journey."""
        return {
            "event_id": self._uuid(),
            "event_type": event_type,
            "timestamp": format_timestamp(moment),
            "source": source,
            "user_id": user_id,
            "session_id": source,
            "correlation_id": self._uuid(),
            "payload": payload,
            "schema_version": SCHEMA_VERSION,
        }

    def _signed_up_before(self, user_id: str, moment: datetime) -> bool:
        """Whether the user's signup is on the wire strictly before an event at ``moment``."""
        versions = self.user_versions.get(user_id)
        return versions is None or versions[0].signed_up_at < _whole_ms(moment)

    def _offer(self, product: Product, moment: datetime) -> Decimal | None:
        """The product's price at ``moment``, or None when it is not for sale then (delisted or not yet listed)."""
        versions = self.product_versions.get(product.product_id)
        if versions is None:
            return product.price
        version = version_at(versions, moment)
        return version.price if version is not None and version.is_active else None

    def session(self, start: datetime) -> list[dict[str, Any]]:
        """One user's session starting at ``start``: its activity in time order, and in a few sessions
        (``P_SESSION_ERROR``) an app error shortly after one of its events."""
        events = self._journey(start)
        if self.error_rng.random() < P_SESSION_ERROR:
            after = self.error_rng.choice(events)
            index = events.index(after) + 1
            events.insert(index, self.app_error(after, self.error_rng))
        return events

    def app_error(
        self, after: dict[str, Any], rng: random.Random, code: str | None = None, message: str | None = None
    ) -> dict[str, Any]:
        """An ``app_error`` of ``after``'s session, on its page, up to 5 s after it (a code and message
        of its source, or the ones given)."""
        page = after["payload"].get("page") or STEP_PAGES[after["event_type"]]
        if code is None or message is None:
            code, message = rng.choices(APP_ERRORS[after["source"]], weights=APP_ERROR_WEIGHTS)[0]
        moment = datetime.strptime(after["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        return {
            "event_id": self._uuid(rng),
            "event_type": "app_error",
            "timestamp": format_timestamp(moment + rng.randrange(50, 5_000) * _ONE_MS),
            **{name: after[name] for name in ("source", "user_id", "session_id", "correlation_id")},
            "payload": {"error_code": code, "message": message.format(page=page), "page": page},
            "schema_version": SCHEMA_VERSION,
        }

    def _journey(self, start: datetime) -> list[dict[str, Any]]:
        """One user's activity from ``start``: page views, then perhaps a cart, a checkout, a purchase."""
        rng = self.rng
        user_id = rng.choices(self.user_ids, cum_weights=self._user_cum_weights)[0]
        while not self._signed_up_before(user_id, start):  # redraw: 80% of users signed up before the window
            user_id = rng.choices(self.user_ids, cum_weights=self._user_cum_weights)[0]
        session_id, correlation_id = self._uuid(), self._uuid()
        source = rng.choice(SOURCES)
        currency = CATALOG_CURRENCY if self.product_versions else rng.choice(CURRENCIES)
        moment = start
        events: list[dict[str, Any]] = []

        def emit(event_type: str, payload: dict[str, Any]) -> None:
            nonlocal moment
            events.append(
                {
                    "event_id": self._uuid(),
                    "event_type": event_type,
                    "timestamp": format_timestamp(moment),
                    "source": source,
                    "user_id": user_id,
                    "session_id": session_id,
                    "correlation_id": correlation_id,
                    "payload": payload,
                    "schema_version": SCHEMA_VERSION,
                }
            )
            moment += timedelta(milliseconds=rng.randrange(2_000, 90_000))

        viewed: list[Product] = []
        for page_index in range(rng.randint(1, 6)):
            if page_index > 0 and rng.random() < 0.6:
                product = rng.choice(self.products)
                while self._offer(product, moment) is None:  # redraw: only a few products are delisted
                    product = rng.choice(self.products)
                viewed.append(product)
                emit(
                    "user_visit",
                    {
                        "page": f"/product/{product.product_id}",
                        "referrer": None,
                        "product_id": product.product_id,
                    },
                )
            else:
                emit(
                    "user_visit",
                    {
                        "page": rng.choice(("/", "/search", f"/category/{rng.choice(CATEGORIES)}")),
                        "referrer": rng.choice(REFERRERS) if page_index == 0 else None,
                        "product_id": None,
                    },
                )
        if not viewed or rng.random() >= P_ADD_TO_CART:
            return events
        cart = rng.sample(viewed, k=min(len(viewed), rng.randint(1, 3)))
        quantities = [rng.randint(1, 3) for _ in cart]
        lines: list[tuple[Decimal, int]] = []
        for product, quantity in zip(cart, quantities, strict=True):
            price = self._offer(product, moment)
            if price is None:  # delisted since it was viewed
                continue
            emit(
                "add_to_cart",
                {
                    "product_id": product.product_id,
                    "price": price,
                    "quantity": quantity,
                    "currency": currency,
                },
            )
            lines.append((price, quantity))
        if not lines or rng.random() >= P_CHECKOUT:
            return events
        order_id = self._uuid()
        cart_value = sum((price * quantity for price, quantity in lines), Decimal(0))
        item_count = sum(quantity for _, quantity in lines)
        emit(
            "checkout",
            {"order_id": order_id, "cart_value": cart_value, "item_count": item_count, "currency": currency},
        )
        if rng.random() >= P_PURCHASE:
            return events
        emit(
            "purchase",
            {
                "order_id": order_id,
                "revenue": cart_value,
                "item_count": item_count,
                "currency": currency,
                "payment_method": rng.choice(PAYMENT_METHODS),
            },
        )
        return events


ACTIVITY_TYPES = ("user_visit", "add_to_cart", "checkout", "purchase")
# The incidents an Anomaly injects, each into the events of its window [at, at + duration):
ANOMALY_KINDS = (
    "volume-drop",  # VOLUME_DROP_SHARE of the sessions starting in it never arrive (a client stops sending)
    "volume-spike",  # VOLUME_SPIKE_FACTOR times the sessions start in it (a bot, a campaign)
    "error-spike",  # ERROR_SPIKE_SHARE of its activity events are followed by SPIKE_ERROR (a backend is down)
    "dead-letter-spike",  # its activity events are sent twice (a retry bug): the gate dead-letters the copies
    "funnel-dip",  # FUNNEL_DIP_SHARE of its purchases never happen (a payment outage)
    "null-drift",  # its page views lose their product_id (a tracking regression)
    "unknown-fields",  # its activity events carry payload.<DRIFT_FIELD>, which no schema declares
)
VOLUME_DROP_SHARE = 0.9
VOLUME_SPIKE_FACTOR = 4
ERROR_SPIKE_SHARE = 0.5
SPIKE_ERROR = ("HTTP_503", "{page}: the server answered 503 Service Unavailable")
FUNNEL_DIP_SHARE = 0.9
DRIFT_FIELD = "ab_variant"


@dataclass(frozen=True)
class Anomaly:
    """One data-quality incident to inject into a generated window: ``kind`` (of ANOMALY_KINDS) in the
    events from ``at`` (UTC) for ``duration``."""

    kind: str
    at: datetime
    duration: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.kind not in ANOMALY_KINDS:
            raise ValueError(f"unknown anomaly {self.kind!r}; kinds: {', '.join(ANOMALY_KINDS)}")
        if self.at.tzinfo is None or self.duration <= timedelta(0):
            raise ValueError("an anomaly needs a time zone-aware start (`at`) and a positive duration")

    @property
    def end(self) -> datetime:
        return self.at + self.duration

    def covers(self, timestamp: str) -> bool:
        """Whether a wire timestamp is in the anomaly's window (the wire format sorts like time)."""
        return format_timestamp(self.at) <= timestamp < format_timestamp(self.end)


def _inject(
    generator: EventGenerator, rng: random.Random, events: list[dict[str, Any]], anomaly: Anomaly
) -> list[dict[str, Any]]:
    """The sessions' events with ``anomaly`` injected (decided by ``rng``, so the rest stays as it was)."""
    kind, covers = anomaly.kind, anomaly.covers
    in_window = [e for e in events if e["event_type"] in ACTIVITY_TYPES and covers(e["timestamp"])]
    firsts: dict[str, str] = {}
    for event in events:
        firsts[event["correlation_id"]] = min(event["timestamp"], firsts.get(event["correlation_id"], "9"))
    starting = [journey for journey, first in firsts.items() if covers(first)]
    if kind == "volume-drop":
        lost = {journey for journey in starting if rng.random() < VOLUME_DROP_SHARE}
        return [e for e in events if e["correlation_id"] not in lost]
    if kind == "volume-spike":
        extra: list[dict[str, Any]] = []
        for _ in range((VOLUME_SPIKE_FACTOR - 1) * len(starting)):
            extra += generator.session(anomaly.at + rng.random() * anomaly.duration)
        return events + extra
    if kind == "error-spike":
        chosen = {id(e) for e in in_window if rng.random() < ERROR_SPIKE_SHARE}
        spiked: list[dict[str, Any]] = []
        for event in events:
            spiked.append(event)
            if id(event) in chosen:
                spiked.append(generator.app_error(event, rng, *SPIKE_ERROR))
        return spiked
    if kind == "dead-letter-spike":
        return events + [dict(event) for event in in_window]
    if kind == "funnel-dip":
        failed = {id(e) for e in in_window if e["event_type"] == "purchase" and rng.random() < FUNNEL_DIP_SHARE}
        return [e for e in events if id(e) not in failed]
    changed = {id(e) for e in in_window if kind == "unknown-fields" or e["event_type"] == "user_visit"}
    if kind == "null-drift":
        patch: dict[str, Any] = {"product_id": None}
    else:
        patch = {DRIFT_FIELD: "B"}
    return [{**e, "payload": {**e["payload"], **patch}} if id(e) in changed else e for e in events]


def _check_options(count: int, days: int, late_fraction: float) -> None:
    if count < 0 or days < 1:
        raise ValueError("count must be >= 0 and days >= 1")
    if not 0 <= late_fraction <= MAX_LATE_FRACTION:
        raise ValueError(f"late_fraction must be between 0 and {MAX_LATE_FRACTION}, got {late_fraction}")


def _sessions(
    generator: EventGenerator, count: int, start: datetime, days: int, anomalies: Sequence[Anomaly], seed: int
) -> list[dict[str, Any]]:
    """Exactly ``count`` events from sessions starting uniformly over ``days`` days (the last one cut short),
    then each of ``anomalies`` injected in turn."""
    span_s = days * 86_400
    events: list[dict[str, Any]] = []
    while len(events) < count:
        session_start = start + timedelta(seconds=generator.rng.uniform(0, span_s - 900))
        events.extend(generator.session(session_start))
    del events[count:]
    rng = random.Random(f"anomaly:{seed}")
    for anomaly in anomalies:
        if not start <= anomaly.at < start + timedelta(days=days):
            raise ValueError(
                f"the anomaly's start {anomaly.at:%Y-%m-%dT%H:%M}Z is outside the generated window "
                f"{start:%Y-%m-%d} .. {start + timedelta(days=days):%Y-%m-%d} (start and days)"
            )
        events = _inject(generator, rng, events, anomaly)
    return events


def _deliver(
    rng: random.Random, reference: list[dict[str, Any]], activity: list[dict[str, Any]], late_fraction: float
) -> tuple[list[dict[str, Any]], frozenset[str]]:
    """Delivery order and the late events' ids: all by timestamp, but ``late_fraction`` of the activity comes last.

    Late events are drawn from all but the newest activity, so each really is older than an event
    delivered before it (as when a phone comes back online). Reference events are never late and go
    first among equal timestamps, so a change is delivered before activity at the same millisecond.
    """
    activity = sorted(activity, key=lambda event: event["timestamp"])
    late_count = round(late_fraction * len(activity))
    late = set(rng.sample(range(len(activity) - late_count), k=late_count)) if late_count else set()
    on_time = reference + [event for index, event in enumerate(activity) if index not in late]
    on_time.sort(key=lambda event: event["timestamp"])
    late_events = [activity[index] for index in sorted(late)]
    return on_time + late_events, frozenset(event["event_id"] for event in late_events)


def generate_events(
    count: int,
    *,
    seed: int = 42,
    days: int = 3,
    start: datetime = DEFAULT_START,
    reference_data: bool = False,
    late_fraction: float = 0.0,
    anomalies: Sequence[Anomaly] = (),
) -> list[dict[str, Any]]:
    """Exactly ``count`` session events (activity and app errors) from sessions spread uniformly over
    ``days`` days, in delivery order.

    Delivery order is time order, except that ``late_fraction`` of the session events (at most
    half) are delivered after all others, keeping their timestamps. ``reference_data`` adds the
    catalog's and accounts' change events on top of the ``count`` (see :func:`generate_dataset`);
    Each of ``anomalies`` then adds, removes or changes events of its window.
    """
    if reference_data:
        return generate_dataset(
            count, seed=seed, days=days, start=start, late_fraction=late_fraction, anomalies=anomalies
        ).events
    _check_options(count, days, late_fraction)
    generator = EventGenerator(seed=seed, users=max(100, count // 40))
    events, _ = _deliver(generator.rng, [], _sessions(generator, count, start, days, anomalies, seed), late_fraction)
    return events


def generate_dataset(
    count: int,
    *,
    seed: int = 42,
    days: int = 3,
    start: datetime = DEFAULT_START,
    late_fraction: float = 0.0,
    anomalies: Sequence[Anomaly] = (),
) -> Dataset:
    """``count`` session events plus reference data, and the version histories tests check them against.

    Every product is listed a day before ``start``; every user's profile is published at signup, in
    the 28 days before ``start`` or, for a fifth of them, inside the window (and always before their
    first activity). Inside the window about 10% of products change price (by 10-40%), 5% change
    category and 3% are delisted; 8% of users change plan and 3% change country.
    """
    _check_options(count, days, late_fraction)
    generator = EventGenerator(seed=seed, users=max(100, count // 40))
    reference = generator.plan_reference_data(start, start + timedelta(days=days))
    sessions = _sessions(generator, count, start, days, anomalies, seed)
    events, late_event_ids = _deliver(generator.rng, reference, sessions, late_fraction)
    return Dataset(events, generator.product_versions, generator.user_versions, late_event_ids)


def live_sessions(seed: int = 42) -> Iterator[list[dict[str, Any]]]:
    """Endless sessions stamped with the wall clock, for ``make dev``'s steady stream."""
    generator = EventGenerator(seed=seed)
    while True:
        yield generator.session(datetime.now(UTC))
