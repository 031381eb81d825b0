"""The bulk decoder: typed rows for good messages, a dead letter with a reason for every bad one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import polars as pl
import pytest

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.contracts.registry import Contract, load_registry
from analytics_platform.ingest import decode as decode_module
from analytics_platform.ingest.decode import decode_batch
from analytics_platform.ingest.gate import Failures, GateContext
from analytics_platform.kafka.reader import RawMessages
from analytics_platform.lakehouse.tables import raw_table_schema
from analytics_platform.sim.generator import generate_events

pytestmark = pytest.mark.fast

NOW = datetime(2026, 11, 26, tzinfo=UTC)
PURCHASE = load_registry().contract("purchase")
CONTEXT = GateContext("events.purchase", NOW, datetime(2000, 1, 1, tzinfo=UTC), timedelta(hours=1))


def purchases(count: int) -> list[dict]:
    return [e for e in generate_events(count * 60, seed=3) if e["event_type"] == "purchase"][:count]


def user_key(value: bytes | None) -> bytes:
    """The key a well-behaved producer sends: the event's user_id."""
    try:
        return str(msgspec.json.decode(value or b"").get("user_id", "")).encode()
    except (msgspec.DecodeError, UnicodeDecodeError, AttributeError, RecursionError):
        return b"k"


def batch(values: list[bytes | None]) -> RawMessages:
    n = len(values)
    keys: list[bytes | None] = [user_key(value) for value in values]
    return RawMessages("events.purchase", [0] * n, list(range(n)), keys, values)


def decode(values: list[bytes | None]):
    return decode_batch(
        PURCHASE, batch(values), NOW, raw_table_schema(PURCHASE).as_arrow(), CONTEXT, max_event_bytes=10_000
    )


def test_good_batch_decodes_every_field_with_its_type() -> None:
    events = purchases(50)
    decoded = decode([encode_event(e) for e in events])
    assert decoded.dead_letters.num_rows == 0
    rows = decoded.rows.to_pylist()
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in events]
    first, event = rows[0], events[0]
    assert first["payload"]["revenue"] == event["payload"]["revenue"]
    assert isinstance(first["payload"]["revenue"], Decimal)
    assert first["event_at"] == datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert first["ingested_at"] == NOW and first["kafka_topic"] == "events.purchase" and first["kafka_offset"] == 0


BAD = {
    "not json": b"{not json",
    "empty message": b"",
    "invalid utf-8": b'{"event_id": "\xff\xfe"}',
    "missing field": b'{"event_id": "a", "event_type": "purchase"}',
    "wrong type": None,
    "wrong event_type": None,
    "bad timestamp": None,
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_message_becomes_a_dead_letter_and_the_rest_still_land(kind: str) -> None:
    good = purchases(5)
    bad_event = dict(good[0], event_id="bad")
    if kind == "wrong type":
        bad_event["payload"] = dict(bad_event["payload"], item_count="three")
    elif kind == "wrong event_type":
        bad_event["event_type"] = "checkout"
    elif kind == "bad timestamp":
        bad_event["timestamp"] = "26/11/2026 10:00"
    bad = BAD[kind] if BAD[kind] is not None else encode_event(bad_event)
    values = [encode_event(e) for e in good[:2]] + [bad] + [encode_event(e) for e in good[2:]]
    decoded = decode(values)
    assert decoded.rows.column("event_id").to_pylist() == [e["event_id"] for e in good]
    letters = decoded.dead_letters.to_pylist()
    assert len(letters) == 1
    assert letters[0]["kafka_offset"] == 2 and letters[0]["raw_value"] == bad and letters[0]["reason"]


def test_null_value_is_a_dead_letter_not_a_crash() -> None:
    decoded = decode([None, encode_event(purchases(1)[0])])
    assert decoded.rows.num_rows == 1
    assert decoded.dead_letters.to_pylist()[0]["reason"].startswith("empty message")


def with_fragment(field: str, fragment: bytes, **change: object) -> bytes:
    """A valid purchase (changed) whose ``field`` is ``fragment`` as raw bytes; ``payload.x`` for the payload."""
    event = dict(purchases(1)[0], event_id="odd", **change)
    if field.startswith("payload."):
        event["payload"] = dict(event["payload"], **{field.removeprefix("payload."): "__SLOT__"})
    else:
        # First, so msgspec meets it before any other field.
        event = {field: "__SLOT__"} | {name: value for name, value in event.items() if name != field}
    return encode_event(event).replace(b'"__SLOT__"', fragment)


ODD = {  # kind -> (message, the check it must fail, or None if it must land)
    "valid, a field no schema declares nested 4,000 deep": (
        with_fragment("deep", b"[" * 4_000 + b"]" * 4_000),
        None,
    ),
    "deep field, then a wrong type": (
        with_fragment("deep", b"[" * 4_000 + b"]" * 4_000, schema_version="one"),
        "message:decoder_error",
    ),
    "revenue 1e400": (with_fragment("payload.revenue", b"1e400"), "message:decoder_error"),
    "item_count beyond int64": (with_fragment("payload.item_count", str(2**63).encode()), "message:decoder_error"),
    "revenue that rounds beyond decimal(12,2)": (
        with_fragment("payload.revenue", b"9999999999.995"),
        "payload.revenue:fits_decimal",
    ),
    "timestamp in year -1": (with_fragment("timestamp", b'"-0001-11-02T10:00:00.000Z"'), "timestamp:iso8601_utc"),
    "timestamp in year 12345": (with_fragment("timestamp", b'"+12345-11-02T10:00:00.000Z"'), "timestamp:iso8601_utc"),
    "a surrogate as UTF-8 bytes in a valid event": (with_fragment("source", b'"\xed\xa0\x80"'), "message:utf8"),
    "byte order mark": (b"\xef\xbb\xbf" + encode_event(dict(purchases(1)[0], event_id="odd")), "message:json"),
    "NaN in a field no schema declares": (with_fragment("extra", b"NaN"), None),
}


@pytest.mark.parametrize("path", ["alone", "behind a message that breaks the bulk parse"])
@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_messages_get_one_verdict_whichever_path_their_batch_takes(kind: str, path: str) -> None:
    value, check = ODD[kind]
    good = [encode_event(e) for e in purchases(2)]
    values: list[bytes | None] = [*good, value] if path == "alone" else [b"{", *good, value]
    decoded = decode(values)
    landed = decoded.rows.column("event_id").to_pylist()
    letters = {letter["raw_value"]: letter for letter in decoded.dead_letters.to_pylist()}
    assert decoded.rows.num_rows + decoded.dead_letters.num_rows == len(values)
    assert [e["event_id"] for e in purchases(2)] == [i for i in landed if i != "odd"]
    if check is None:
        assert "odd" in landed
    else:
        assert check in letters[value]["failed_checks"], letters[value]["reason"]
        if check == "message:decoder_error":
            assert letters[value]["reason"].startswith("decoder error: ")


def test_deep_nesting_that_is_not_an_event_names_the_recursion_error() -> None:
    value = ODD["deep field, then a wrong type"][0]
    reason = decode([value]).dead_letters.to_pylist()[0]["reason"]
    assert reason.startswith("decoder error: RecursionError: ") and "schema_version" in reason


def test_a_gate_that_raises_on_one_message_dead_letters_only_that_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net for failures nobody has found yet: the gate (or a step around it) raises."""
    real_gate = decode_module.gate

    def gate(frame: pl.DataFrame, contract: Contract, context: GateContext) -> Failures:
        if "boom" in frame["event_id"].to_list():
            raise pl.exceptions.PanicException("the gate fell over")  # a BaseException, as polars' panics are
        return real_gate(frame, contract, context)

    monkeypatch.setattr(decode_module, "gate", gate)
    events = purchases(40)
    values: list[bytes | None] = [encode_event(e) for e in events]
    values[17] = encode_event(dict(events[17], event_id="boom"))
    decoded = decode(values)
    assert decoded.rows.num_rows == 39
    (letter,) = decoded.dead_letters.to_pylist()
    assert letter["kafka_offset"] == 17 and letter["failed_checks"] == ["message:decoder_error"]
    assert letter["reason"] == "decoder error: PanicException: the gate fell over"


def test_a_batch_that_raises_only_as_a_whole_is_dead_lettered_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    real_gate = decode_module.gate

    def gate(frame: pl.DataFrame, contract: Contract, context: GateContext) -> Failures:
        if {"first", "last"} <= set(frame["event_id"].to_list()):
            raise ValueError("these two together")
        return real_gate(frame, contract, context)

    monkeypatch.setattr(decode_module, "gate", gate)
    events = purchases(6)
    events[0], events[-1] = dict(events[0], event_id="first"), dict(events[-1], event_id="last")
    decoded = decode([encode_event(e) for e in events])
    assert decoded.rows.num_rows == 0
    letters = decoded.dead_letters.to_pylist()
    assert [letter["kafka_offset"] for letter in letters] == list(range(6))
    assert all(letter["reason"].endswith("(raised by its batch as a whole, not by one message)") for letter in letters)


def test_isolation_gives_up_splitting_after_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    real_gate = decode_module.gate

    def gate(frame: pl.DataFrame, contract: Contract, context: GateContext) -> Failures:
        if any(i.startswith("bad") for i in frame["event_id"].to_list()):
            raise ValueError("bad")
        return real_gate(frame, contract, context)

    monkeypatch.setattr(decode_module, "gate", gate)
    monkeypatch.setattr(decode_module, "MAX_ISOLATION_PROBES", 3)
    events = [dict(e, event_id=f"bad-{i}") if i % 4 == 0 else e for i, e in enumerate(purchases(32))]
    decoded = decode([encode_event(e) for e in events])
    assert decoded.rows.num_rows + decoded.dead_letters.num_rows == 32
    assert {letter["kafka_offset"] for letter in decoded.dead_letters.to_pylist()} >= set(range(0, 32, 4))
    assert decoded.rows.num_rows > 0  # the parts that did not raise landed
