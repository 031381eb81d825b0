"""The synthetic stream: deterministic, exactly sized, and shaped like a real funnel."""

from __future__ import annotations

from collections import defaultdict

from analytics_platform.contracts.registry import load_registry
from analytics_platform.contracts.validation import validate_message
from analytics_platform.events import encode_event
from analytics_platform.generator import generate_events


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
