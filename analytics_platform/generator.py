"""Synthetic e-commerce traffic: users browse in sessions and flow through the purchase funnel.

Each session is one journey (one ``correlation_id``): a few page views, then with realistic drop-off
an add-to-cart, a checkout and a purchase. Given the same seed, start and size the stream is
byte-for-byte identical, so tests can recompute every metric from the generated events.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

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


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    price: Decimal


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and a ``Z`` suffix, as on the wire."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EventGenerator:
    """Deterministic source of sessions; ``users`` and ``products`` scale the simulated shop."""

    def __init__(self, seed: int = 42, users: int = 5_000, products: int = 200) -> None:
        self.rng = random.Random(seed)
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

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def session(self, start: datetime) -> list[dict[str, Any]]:
        """One user's session starting at ``start``: the events in time order."""
        rng = self.rng
        user_id = rng.choices(self.user_ids, cum_weights=self._user_cum_weights)[0]
        session_id, correlation_id = self._uuid(), self._uuid()
        source, currency = rng.choice(SOURCES), rng.choice(CURRENCIES)
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
        for product, quantity in zip(cart, quantities, strict=True):
            emit(
                "add_to_cart",
                {
                    "product_id": product.product_id,
                    "price": product.price,
                    "quantity": quantity,
                    "currency": currency,
                },
            )
        if rng.random() >= P_CHECKOUT:
            return events
        order_id = self._uuid()
        cart_value = sum((p.price * q for p, q in zip(cart, quantities, strict=True)), Decimal(0))
        item_count = sum(quantities)
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


def generate_events(
    count: int, *, seed: int = 42, days: int = 3, start: datetime = DEFAULT_START
) -> list[dict[str, Any]]:
    """Exactly ``count`` events from sessions spread uniformly over ``days`` days, in time order."""
    if count < 0 or days < 1:
        raise ValueError("count must be >= 0 and days >= 1")
    generator = EventGenerator(seed=seed, users=max(100, count // 40))
    span_s = days * 86_400
    events: list[dict[str, Any]] = []
    while len(events) < count:
        session_start = start + timedelta(seconds=generator.rng.uniform(0, span_s - 900))
        events.extend(generator.session(session_start))
    del events[count:]
    events.sort(key=lambda event: event["timestamp"])
    return events


def live_sessions(seed: int = 42) -> Iterator[list[dict[str, Any]]]:
    """Endless sessions stamped with the wall clock, for ``make dev``'s steady stream."""
    generator = EventGenerator(seed=seed)
    while True:
        yield generator.session(datetime.now(UTC))
