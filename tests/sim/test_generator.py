"""The synthetic stream: deterministic, exactly sized, and shaped like a real funnel."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics_platform.cli import app
from analytics_platform.contracts.envelope import encode_event
from analytics_platform.contracts.registry import load_registry
from analytics_platform.contracts.validation import validate_message
from analytics_platform.sim import generator
from analytics_platform.sim.generator import (
    APP_ERRORS,
    DEFAULT_START,
    DRIFT_FIELD,
    SPIKE_ERROR,
    VOLUME_SPIKE_FACTOR,
    Anomaly,
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
        if event["event_type"] != "app_error":
            sessions[event["correlation_id"]].append(event["event_type"])
    reached = {step: 0 for step in steps}
    for types in sessions.values():
        ranks = [steps.index(t) for t in types]
        assert ranks == sorted(ranks)  # never a purchase before a checkout
        for step in set(types):
            reached[step] += 1
    assert reached["user_visit"] > reached["add_to_cart"] > reached["checkout"] > reached["purchase"] > 0


ACTIVITY_TYPES = {"user_visit", "add_to_cart", "checkout", "purchase"}
SESSION_TYPES = ACTIVITY_TYPES | {"app_error"}  # what sessions send: the count generate_events is asked for


def as_of(versions: Sequence[VersionT], timestamp: str) -> VersionT:
    """The version a wire timestamp sees: the last whose valid_from is not after it (same string format)."""
    seen = [v for v in versions if format_timestamp(v.valid_from) <= timestamp]
    assert seen, f"nothing valid at {timestamp}"
    return seen[-1]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(5_000, seed=42, days=3, late_fraction=0.02)


def test_reference_data_keeps_the_session_count_and_changes_mid_window(dataset: Dataset) -> None:
    events = dataset.events
    assert sum(e["event_type"] in SESSION_TYPES for e in events) == 5_000
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
    assert len(late) == 100  # 2% of the sessions' events
    on_time, delivered_late = events[: -len(late)], events[-len(late) :]
    assert {e["event_id"] for e in delivered_late} == late
    assert all(e["event_type"] in SESSION_TYPES for e in delivered_late)
    assert [e["timestamp"] for e in on_time] == sorted(e["timestamp"] for e in on_time)
    assert [e["timestamp"] for e in delivered_late] == sorted(e["timestamp"] for e in delivered_late)
    assert max(e["timestamp"] for e in delivered_late) < on_time[-1]["timestamp"]


def test_reference_events_pass_the_contracts_and_the_gates(dataset: Dataset) -> None:
    registry = load_registry()
    for event in dataset.events:
        assert validate_message(registry.contract(event["event_type"]), encode_event(event)) is None, event
    assert min(e["timestamp"] for e in dataset.events) > "2000-01-01"
    assert max(e["timestamp"] for e in dataset.events) < format_timestamp(datetime.now(UTC))
    reference = [e for e in dataset.events if e["event_type"] not in SESSION_TYPES]
    assert all(
        e["payload"]["price"] >= 0 and e["payload"]["currency"] == "EUR" for e in reference if "price" in e["payload"]
    )


def test_reference_data_is_deterministic_per_seed(dataset: Dataset) -> None:
    again = generate_events(5_000, seed=42, days=3, reference_data=True, late_fraction=0.02)
    assert [encode_event(e) for e in again] == [encode_event(e) for e in dataset.events]
    other = generate_events(5_000, seed=43, days=3, reference_data=True, late_fraction=0.02)
    assert [encode_event(e) for e in other] != [encode_event(e) for e in dataset.events]


def parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_a_few_sessions_report_an_app_error_of_their_own_right_after_one_of_their_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = generate_events(20_000, seed=3)
    by_journey: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_journey[event["correlation_id"]].append(event)
    errors = [e for e in events if e["event_type"] == "app_error"]
    assert 0.02 < len(errors) / len(by_journey) < 0.04  # P_SESSION_ERROR, 3%
    for error in errors:
        journey = by_journey[error["correlation_id"]]
        activity = [e for e in journey if e["event_type"] != "app_error"]
        assert len(journey) == len(activity) + 1  # one error per session at most
        assert {(e["user_id"], e["session_id"], e["source"]) for e in journey} == {
            (error["user_id"], error["session_id"], error["source"])
        }
        before = [e for e in activity if timedelta(0) < parse(error["timestamp"]) - parse(e["timestamp"]) <= FIVE_S]
        assert before, error  # it follows one of the session's events within 5 s
        code, page = error["payload"]["error_code"], error["payload"]["page"]
        assert code in {known for known, _ in APP_ERRORS[error["source"]]} and page in error["payload"]["message"]
    # Errors come from a random stream of their own: without them the journeys are the same.
    monkeypatch.setattr(generator, "P_SESSION_ERROR", 0.0)
    activity = [e for e in events if e["event_type"] != "app_error"]
    ids = {e["event_id"] for e in activity}
    assert [e for e in generate_events(20_000, seed=3) if e["event_id"] in ids] == activity


FIVE_S = timedelta(seconds=5)
AT = DEFAULT_START + timedelta(days=1, hours=10)


def window(events: list[dict[str, Any]], anomaly: Anomaly, types: set[str] = ACTIVITY_TYPES) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] in types and anomaly.covers(e["timestamp"])]


@pytest.fixture(scope="module")
def clean() -> list[dict[str, Any]]:
    return generate_events(8_000, seed=5, days=2)


def injected(kind: str, duration: timedelta = timedelta(hours=1)) -> tuple[Anomaly, list[dict[str, Any]]]:
    anomaly = Anomaly(kind, AT, duration)
    return anomaly, generate_events(8_000, seed=5, days=2, anomalies=[anomaly])


def journeys_starting_in(events: list[dict[str, Any]], anomaly: Anomaly) -> set[str]:
    firsts: dict[str, str] = {}
    for event in events:
        firsts[event["correlation_id"]] = min(firsts.get(event["correlation_id"], "9"), event["timestamp"])
    return {journey for journey, first in firsts.items() if anomaly.covers(first)}


def test_each_anomaly_changes_its_window_only(clean: list[dict[str, Any]]) -> None:
    ids = {e["event_id"] for e in clean}

    anomaly, dropped = injected("volume-drop")
    starting = journeys_starting_in(clean, anomaly)
    kept = starting & {e["correlation_id"] for e in dropped}
    assert len(kept) <= 0.25 * len(starting)  # VOLUME_DROP_SHARE: 90% of them are lost
    assert all(e["correlation_id"] not in starting or e["correlation_id"] in kept for e in dropped)
    assert [e for e in clean if e["correlation_id"] not in starting] == [
        e for e in dropped if e["correlation_id"] not in starting
    ]

    anomaly, spiked = injected("volume-spike")
    extra = journeys_starting_in(spiked, anomaly) - journeys_starting_in(clean, anomaly)
    assert len(extra) == (VOLUME_SPIKE_FACTOR - 1) * len(journeys_starting_in(clean, anomaly))
    assert [e for e in spiked if e["event_id"] in ids] == clean

    anomaly, errors = injected("error-spike", timedelta(minutes=15))
    new = [e for e in errors if e["event_id"] not in ids]
    assert all(e["event_type"] == "app_error" and e["payload"]["error_code"] == SPIKE_ERROR[0] for e in new)
    assert 0.3 * len(window(clean, anomaly)) < len(new) <= len(window(clean, anomaly))  # ERROR_SPIKE_SHARE, 50%

    anomaly, resent = injected("dead-letter-spike", timedelta(minutes=15))
    copies = Counter(e["event_id"] for e in resent) - Counter(e["event_id"] for e in clean)
    assert copies == Counter(e["event_id"] for e in window(clean, anomaly))

    anomaly, dipped = injected("funnel-dip", timedelta(hours=6))
    failed = {e["event_id"] for e in window(clean, anomaly, {"purchase"})} - {e["event_id"] for e in dipped}
    assert len(failed) >= 0.75 * len(window(clean, anomaly, {"purchase"})) > 0  # FUNNEL_DIP_SHARE, 90%
    assert [e for e in clean if e["event_id"] not in failed] == dipped

    anomaly, drifted = injected("null-drift")
    assert all(e["payload"]["product_id"] is None for e in window(drifted, anomaly, {"user_visit"}))
    assert any(e["payload"]["product_id"] for e in window(clean, anomaly, {"user_visit"}))
    assert [e for e in drifted if not anomaly.covers(e["timestamp"])] == [
        e for e in clean if not anomaly.covers(e["timestamp"])
    ]

    anomaly, unknown = injected("unknown-fields")
    assert all(e["payload"][DRIFT_FIELD] == "B" for e in window(unknown, anomaly))
    assert not any(DRIFT_FIELD in e["payload"] for e in unknown if not anomaly.covers(e["timestamp"]))


def test_an_anomaly_is_checked_before_anything_is_generated() -> None:
    with pytest.raises(ValueError, match="unknown anomaly 'outage'; kinds: volume-drop"):
        Anomaly("outage", AT)
    with pytest.raises(ValueError, match="time zone-aware"):
        Anomaly("volume-drop", AT.replace(tzinfo=None))
    with pytest.raises(ValueError, match="outside the generated window 2026-11-01 .. 2026-11-03"):
        generate_events(100, days=2, anomalies=[Anomaly("volume-drop", AT + timedelta(days=2))])
    runner = CliRunner()
    wrong = runner.invoke(app, ["generate", "--anomaly", "outage", "--at", "2026-11-02T10:00:00"])
    assert wrong.exit_code == 1 and "unknown anomaly 'outage'" in wrong.output
    without_time = runner.invoke(app, ["generate", "--anomaly", "funnel-dip"])
    assert without_time.exit_code == 1 and "--anomaly needs --at" in without_time.output
