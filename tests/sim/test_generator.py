"""The synthetic stream: deterministic, exactly sized, and shaped like a real funnel."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.contracts.registry import load_registry
from analytics_platform.contracts.validation import validate_message
from analytics_platform.sim.generator import (
    DEFAULT_START,
    Dataset,
    VersionT,
    format_timestamp,
    generate_dataset,
    generate_events,
)

pytestmark = pytest.mark.fast


def test_same_seed_gives_byte_identical_streams_and_other_seeds_differ() -> None:
    first = [encode_event(e) for e in generate_events(3_000, seed=9, days=2)]
    assert first == [encode_event(e) for e in generate_events(3_000, seed=9, days=2)]
    assert first != [encode_event(e) for e in generate_events(3_000, seed=10, days=2)]


def test_exact_size_time_order_days_and_contract() -> None:
    events = generate_events(5_000, seed=1, days=3)
    assert len(events) == 5_000 == len({e["event_id"] for e in events})
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert {e["timestamp"][:10] for e in events} == {"2026-11-01", "2026-11-02", "2026-11-03"}
    registry = load_registry()
    for event in events:  # every event satisfies its type's schema
        assert validate_message(registry.contract(event["event_type"]), encode_event(event)) is None


def test_sessions_flow_through_the_funnel_in_order_with_drop_off() -> None:
    events = generate_events(20_000, seed=2)
    steps = ["user_visit", "add_to_cart", "checkout", "purchase"]
    sessions: dict[str, list[str]] = defaultdict(list)
    for event in events:
        sessions[event["correlation_id"]].append(event["event_type"])
    reached = {step: 0 for step in steps}
    for types in sessions.values():
        ranks = [steps.index(t) for t in types]
        assert ranks == sorted(ranks)  # never a purchase before a checkout
        for step in set(types):
            reached[step] += 1
    assert reached["user_visit"] > reached["add_to_cart"] > reached["checkout"] > reached["purchase"] > 0


ACTIVITY_TYPES = {"user_visit", "add_to_cart", "checkout", "purchase"}


def as_of(versions: Sequence[VersionT], timestamp: str) -> VersionT:
    """The version a wire timestamp sees: the last whose valid_from is not after it (same string format)."""
    seen = [v for v in versions if format_timestamp(v.valid_from) <= timestamp]
    assert seen, f"nothing valid at {timestamp}"
    return seen[-1]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(5_000, seed=42, days=3, late_fraction=0.02)


def test_reference_data_keeps_the_activity_count_and_changes_mid_window(dataset: Dataset) -> None:
    events = dataset.events
    assert sum(e["event_type"] in ACTIVITY_TYPES for e in events) == 5_000
    assert len({e["event_id"] for e in events}) == len(events)
    window_start = format_timestamp(DEFAULT_START)
    changes = [
        (before, after)
        for versions in dataset.product_versions.values()
        for before, after in itertools.pairwise(versions)
        if format_timestamp(after.valid_from) >= window_start
    ]
    assert any(before.category != after.category for before, after in changes)
    assert any(before.price != after.price for before, after in changes)
    # Every version is on the wire, once: the initial catalog, signups and each change.
    product_events = [e for e in events if e["event_type"] == "product_changed"]
    assert len(product_events) == sum(len(v) for v in dataset.product_versions.values())
    assert {e["user_id"] for e in product_events} == {"catalog"}
    profile_events = [e for e in events if e["event_type"] == "user_profile_changed"]
    assert len(profile_events) == sum(len(v) for v in dataset.user_versions.values())
    assert all(e["timestamp"] >= e["payload"]["signed_up_at"] for e in profile_events)


def test_activity_is_consistent_with_the_reference_data_as_of_event_time(dataset: Dataset) -> None:
    activity = [e for e in dataset.events if e["event_type"] in ACTIVITY_TYPES]
    for event in activity:
        signup = dataset.user_versions[event["user_id"]][0]
        assert format_timestamp(signup.signed_up_at) < event["timestamp"], event
        product_id = event["payload"].get("product_id")
        if product_id is not None:  # nobody views or carts a delisted product
            assert as_of(dataset.product_versions[product_id], event["timestamp"]).is_active, event
    carts = [e for e in activity if e["event_type"] == "add_to_cart"]
    assert carts
    for event in carts:
        product = as_of(dataset.product_versions[event["payload"]["product_id"]], event["timestamp"])
        assert (event["payload"]["price"], event["payload"]["currency"]) == (product.price, "EUR"), event
    # Carts after a price change see the new price (the test above is not vacuous).
    repriced = {pid for pid, versions in dataset.product_versions.items() if len({v.price for v in versions}) > 1}
    assert any(
        e["payload"]["price"] != dataset.product_versions[e["payload"]["product_id"]][0].price
        for e in carts
        if e["payload"]["product_id"] in repriced
    )


def test_late_events_come_last_with_their_original_timestamps(dataset: Dataset) -> None:
    events = dataset.events
    late = dataset.late_event_ids
    assert len(late) == 100  # 2% of the activity
    on_time, delivered_late = events[: -len(late)], events[-len(late) :]
    assert {e["event_id"] for e in delivered_late} == late
    assert all(e["event_type"] in ACTIVITY_TYPES for e in delivered_late)
    assert [e["timestamp"] for e in on_time] == sorted(e["timestamp"] for e in on_time)
    assert [e["timestamp"] for e in delivered_late] == sorted(e["timestamp"] for e in delivered_late)
    assert max(e["timestamp"] for e in delivered_late) < on_time[-1]["timestamp"]


def test_reference_events_pass_the_contracts_and_the_gates(dataset: Dataset) -> None:
    registry = load_registry()
    for event in dataset.events:
        assert validate_message(registry.contract(event["event_type"]), encode_event(event)) is None, event
    assert min(e["timestamp"] for e in dataset.events) > "2000-01-01"
    assert max(e["timestamp"] for e in dataset.events) < format_timestamp(datetime.now(UTC))
    reference = [e for e in dataset.events if e["event_type"] not in ACTIVITY_TYPES]
    assert all(
        e["payload"]["price"] >= 0 and e["payload"]["currency"] == "EUR" for e in reference if "price" in e["payload"]
    )


def test_reference_data_is_deterministic_per_seed(dataset: Dataset) -> None:
    again = generate_events(5_000, seed=42, days=3, reference_data=True, late_fraction=0.02)
    assert [encode_event(e) for e in again] == [encode_event(e) for e in dataset.events]
    other = generate_events(5_000, seed=43, days=3, reference_data=True, late_fraction=0.02)
    assert [encode_event(e) for e in other] != [encode_event(e) for e in dataset.events]
