"""Fuzzing the real decode-and-gate path: whatever bytes arrive, no message can fail its batch.

Batches mix valid purchases (with odd but legal strings) and messages built to break a decoder:
random bytes, mutated real messages, nesting far beyond any recursion limit, numbers beyond every
type, lone surrogates, invalid UTF-8, NULs, byte order marks, sizes around PLATFORM_MAX_EVENT_BYTES.
Each batch goes through :func:`decode_batch` with the registry's contract, the pandera gate, a
GateContext built as ingestion builds it and the raw table's real Arrow schema, and must:

- not raise;
- put every message, by (partition, offset), in exactly one of rows and dead letters, once;
- land every valid purchase with its values intact;
- route every message the same way whether its batch took the bulk path or the per-message one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics_platform.contracts.currencies import ISO_4217
from analytics_platform.contracts.envelope import encode_event
from analytics_platform.contracts.registry import load_registry
from analytics_platform.ingest.decode import DecodedBatch, decode_batch
from analytics_platform.ingest.dedup import DedupWindow, RecentEventIds
from analytics_platform.ingest.land import gate_context
from analytics_platform.kafka.reader import RawMessages
from analytics_platform.lakehouse.tables import raw_table_schema
from analytics_platform.settings import Settings

pytestmark = pytest.mark.fast

TOPIC = "events.purchase"
NOW = datetime(2026, 11, 26, tzinfo=UTC)
CONTRACT = load_registry().contract("purchase")
TARGET = raw_table_schema(CONTRACT).as_arrow()
LIMIT: int = Settings.model_fields["max_event_bytes"].default  # the tests run without PLATFORM_* variables
ALREADY_LANDED = "landed-in-an-earlier-batch"
FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
Event = dict[str, Any]


@dataclass(frozen=True)
class Message:
    value: bytes | None
    key: bytes | None
    event: Event | None = None
    """The valid purchase this message carries (it must land with these values), or None."""
    poison: bool = False
    """True if it must be dead-lettered whatever the batch around it."""


def decode(messages: list[Message], partitions: list[int]) -> tuple[DecodedBatch, list[tuple[int, int]]]:
    """Decode as ingestion does: (partition, offset) order, a context from the default settings."""
    offsets: dict[int, int] = {}
    positions = []
    for partition in partitions:
        positions.append((partition, offsets.get(partition, 0)))
        offsets[partition] = offsets.get(partition, 0) + 1
    order = sorted(range(len(messages)), key=lambda i: positions[i])
    raw = RawMessages(
        TOPIC,
        [positions[i][0] for i in order],
        [positions[i][1] for i in order],
        [messages[i].key for i in order],
        [messages[i].value for i in order],
    )
    window = DedupWindow(10, RecentEventIds.of(pl.Series("event_id", [ALREADY_LANDED], dtype=pl.String)))
    context = gate_context(Settings(), TOPIC, NOW, window)
    decoded = decode_batch(CONTRACT, raw, NOW, TARGET, context, max_event_bytes=LIMIT)
    return decoded, positions


# --- valid purchases, with every kind of legal oddity in their strings ---------------------------

ODD_CHARACTERS = ["\u202e", "\u200f", "\u061c", "\ufeff", "\x00", "\u2028", "\n", '"', "\\", "\U0001f600", "é", "\x7f"]
strings = st.text(st.characters(codec="utf-8"), max_size=12) | st.lists(st.sampled_from(ODD_CHARACTERS)).map("".join)


@st.composite
def purchases(draw: st.DrawFn) -> Event:
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2026, 11, 26), timezones=st.just(UTC)))
    return {
        "event_id": f"valid-{draw(st.uuids())}{draw(strings)}",
        "event_type": "purchase",
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "source": draw(strings),
        "user_id": draw(strings),
        "session_id": draw(strings),
        "correlation_id": draw(strings),
        "payload": {
            "order_id": draw(strings),
            "revenue": draw(st.decimals(0, Decimal("9999999999.99"), places=2)),
            "item_count": draw(st.integers(0, 2**31 - 1)),
            "currency": draw(st.sampled_from(sorted(ISO_4217))),
            "payment_method": draw(strings),
        },
        "schema_version": 1,
    }


keys = st.none() | st.binary(max_size=8) | st.just(b"user-1")


@st.composite
def valid_messages(draw: st.DrawFn) -> Message:
    event = draw(purchases())
    value = encode_event(event)
    if draw(st.booleans()):  # pretty-printed, newlines and all: still valid
        value = msgspec.json.format(value, indent=draw(st.integers(0, 4)))
    return Message(value, draw(keys), event=event)


@st.composite
def sized_messages(draw: st.DrawFn) -> Message:
    """A valid purchase padded (a field no schema declares) to a size around the limit."""
    event = draw(purchases())
    stub = encode_event(dict(event, padding=""))
    size = draw(st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1]) | st.integers(len(stub), LIMIT))
    value = stub.replace(b'"padding":""', b'"padding":"' + b"x" * (size - len(stub)) + b'"')
    fits = len(value) <= LIMIT
    return Message(value, draw(keys), event=event if fits else None, poison=not fits)


# --- poison ---------------------------------------------------------------------------------------

DEPTHS = st.sampled_from([2, 64, 500, 999, 1_000, 5_000, 40_000, LIMIT // 2 - 200])


def nested(depth: int, kind: str) -> bytes:
    return {
        "arrays": b"[" * depth + b"]" * depth,
        "objects": b'{"a":' * depth + b"1" + b"}" * depth,
        "mixed": b'[{"a":' * (depth // 2) + b"0" + b"}]" * (depth // 2),
        "unclosed": b"[" * depth,
    }[kind]


nesting = st.builds(nested, DEPTHS, st.sampled_from(["arrays", "objects", "mixed", "unclosed"]))
numbers = st.sampled_from(
    [b"1e400", b"-1e400", b"1e-400", b"-0", b"1E+308", b"-1.7976931348623157e309", b"NaN", b"Infinity", b"0x10"]
    + [str(n).encode() for n in (2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100)]
    + [b"9" * 5_000, b"-" + b"9" * 5_000, b"0." + b"0" * 5_000 + b"1", b"1" + b"0" * 400 + b".5"]
    + [b"9999999999.994", b"9999999999.995", b"-9999999999.999", b"10000000000", b"0.005", b"-0.001"]
)
odd_strings = st.sampled_from(
    [
        b'"\\ud800"',
        b'"\\udc00"',
        b'"\\ud800\\u0041"',
        b'"\\udfff\\ud800"',
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 (CESU-8): not UTF-8
        b'"\xff\xfe"',
        b'"\xc0\xaf"',  # overlong
        b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
        b'"a\x00b"',  # a raw NUL: JSON allows none of the control characters unescaped
        b'"\\u0000"',
        b'"\xef\xbb\xbf"',  # U+FEFF inside a string: legal
        b'"\xe2\x80\xae"',  # U+202E RIGHT-TO-LEFT OVERRIDE: legal
        b'"-0001-01-01T00:00:00.000Z"',
        b'"+12345-01-01T00:00:00.000Z"',
        b'"0000-01-01T00:00:00.000Z"',
        b'"9999-12-31T23:59:59.999999999Z"',
    ]
)
fragments = nesting | numbers | odd_strings | st.sampled_from([b"null", b"true", b"[]", b"{}", b'""', b"1.0"])
SLOTS = [*(f"envelope.{name}" for name in ("event_id", "timestamp", "source", "schema_version", "payload"))]
SLOTS += [f"payload.{name}" for name in ("order_id", "revenue", "item_count", "currency")]
SLOTS += ["envelope.unknown", "payload.unknown"]


@st.composite
def slotted(draw: st.DrawFn) -> Message:
    """A purchase with one field's value (or a field no schema declares) replaced by a nasty fragment."""
    event = draw(purchases())
    where, name = draw(st.sampled_from(SLOTS)).split(".")
    target = event if where == "envelope" else event["payload"]
    target[name] = "__SLOT__"
    return Message(encode_event(event).replace(b'"__SLOT__"', draw(fragments)), draw(keys))


@st.composite
def mutated(draw: st.DrawFn) -> Message:
    """A real message with a few bytes flipped, inserted, deleted, duplicated or cut off."""
    value = bytearray(encode_event(draw(purchases())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(value)))
        operation = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        if operation == "flip" and at < len(value):
            value[at] = draw(st.integers(0, 255))
        elif operation == "insert":
            value[at:at] = draw(st.binary(min_size=1, max_size=4) | odd_strings | numbers)
        elif operation == "delete":
            del value[at : at + draw(st.integers(1, 8))]
        elif operation == "duplicate":
            value[at:at] = value[at : at + draw(st.integers(1, 40))]
        elif operation == "truncate":
            del value[at:]
    return Message(bytes(value), draw(keys))


@st.composite
def framed(draw: st.DrawFn) -> Message:
    """A valid purchase wrapped in something that makes it not one JSON document (or not UTF-8)."""
    value = encode_event(draw(purchases()))
    wrapped = draw(
        st.sampled_from(
            [
                b"\xef\xbb\xbf" + value,  # byte order mark
                value + b" trailing",
                value + value,
                value[:-1] + b',"event_id":"x"\xff}',
                b"[" + value + b"]",
                b"\x00" + value,
            ]
        )
    )
    return Message(wrapped, draw(keys), poison=True)


@st.composite
def deep_but_valid(draw: st.DrawFn) -> Message:
    """A valid purchase with a field no schema declares nested deep: the field is ignored, the event lands."""
    event = draw(purchases())
    value = encode_event(dict(event, deep="__DEEP__")).replace(
        b'"__DEEP__"', draw(nesting.filter(lambda n: n[-1:] != b"["))
    )
    return Message(value, draw(keys), event=event if len(value) <= LIMIT else None, poison=len(value) > LIMIT)


raw_bytes = st.builds(Message, st.binary(max_size=64) | st.binary(min_size=1, max_size=8).map(lambda b: b * 50), keys)
empty = st.builds(Message, st.sampled_from([None, b""]), keys, poison=st.just(True))
duplicate_of_landed = st.builds(
    lambda event, key: Message(encode_event(dict(event, event_id=ALREADY_LANDED)), key, poison=True),
    purchases(),
    keys,
)
top_level_nesting = st.builds(lambda value, key: Message(value, key, poison=True), nesting, keys)
messages = st.one_of(
    valid_messages(),
    sized_messages(),
    slotted(),
    mutated(),
    framed(),
    deep_but_valid(),
    raw_bytes,
    empty,
    duplicate_of_landed,
    top_level_nesting,
)
batches = st.lists(messages, min_size=1, max_size=10).flatmap(
    lambda batch: st.tuples(st.just(batch), st.lists(st.integers(0, 2), min_size=len(batch), max_size=len(batch)))
)


def routes(decoded: DecodedBatch) -> dict[tuple[int, int], str]:
    """Where each (partition, offset) went; fails on a message that went to both, or twice."""
    rows, letters_table = decoded.rows, decoded.dead_letters
    landed = list(zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist(), strict=True))
    letters = list(
        zip(letters_table["kafka_partition"].to_pylist(), letters_table["kafka_offset"].to_pylist(), strict=True)
    )
    assert len(set(landed)) == len(landed) and len(set(letters)) == len(letters), "a message came out twice"
    assert not set(landed) & set(letters), "a message both landed and was dead-lettered"
    return {position: "rows" for position in landed} | {position: "dead_letter" for position in letters}


def assert_intact(row: dict[str, Any], event: Event) -> None:
    for name in ("event_id", "event_type", "source", "user_id", "session_id", "correlation_id", "schema_version"):
        assert row[name] == event[name], name
    assert row["event_at"] == datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert row["payload"] == event["payload"]


def known(**change: Any) -> Event:
    """A fixed valid purchase, changed."""
    event: Event = {
        "event_id": "known-1",
        "event_type": "purchase",
        "timestamp": "2026-11-02T10:00:00.000000Z",
        "source": "web",
        "user_id": "user-1",
        "session_id": "session-1",
        "correlation_id": "journey-1",
        "payload": {
            "order_id": "order-1",
            "revenue": Decimal("19.99"),
            "item_count": 2,
            "currency": "EUR",
            "payment_method": "card",
        },
        "schema_version": 1,
    }
    return event | change


def spliced(event: Event, fragment: bytes, field: str = "deep") -> bytes:
    """``event`` with ``field`` (first; by default one no schema declares) whose value is ``fragment``."""
    return encode_event({field: "__SLOT__"} | event).replace(b'"__SLOT__"', fragment)


def with_revenue(fragment: bytes, event_id: str) -> bytes:
    event = known(event_id=event_id, payload=dict(known()["payload"], revenue="__SLOT__"))
    return encode_event(event).replace(b'"__SLOT__"', fragment)


# The cases the issue names, always run: nesting beyond the recursion limit (valid, and before a
# wrong type), numbers beyond a double, int64 or the decimal's precision once rounded, a year no
# datetime holds, bytes that are not UTF-8 in an otherwise valid event, NaN where no schema looks.
ISSUE_CASES = [
    Message(encode_event(known(event_id="before")), b"user-1", event=known(event_id="before")),
    Message(spliced(known(event_id="deep"), nested(40_000, "arrays")), None, event=known(event_id="deep")),
    Message(spliced(known(event_id="deep-bad", schema_version="one"), nested(15_000, "objects")), None, poison=True),
    Message(nested(LIMIT // 2, "arrays"), None, poison=True),
    Message(with_revenue(b"1e400", "huge-revenue"), None, poison=True),
    Message(with_revenue(b"9999999999.995", "rounds-out-of-range"), None, poison=True),
    Message(
        encode_event(known(event_id="int64", payload=dict(known()["payload"], item_count=2**63))), None, poison=True
    ),
    Message(encode_event(known(event_id="year", timestamp="-0001-11-02T10:00:00.000Z")), None, poison=True),
    Message(spliced(known(event_id="not-utf8", source="__SLOT__"), b'"\xed\xa0\x80"', "source"), None, poison=True),
    Message(b"\xef\xbb\xbf" + encode_event(known(event_id="bom")), None, poison=True),
    Message(spliced(known(event_id="nan"), b"NaN"), None, event=known(event_id="nan")),
    Message(encode_event(known(event_id="after")), b"user-1", event=known(event_id="after")),
]


@FUZZ
@given(batches)
@example((ISSUE_CASES, [0] * len(ISSUE_CASES)))
@example((ISSUE_CASES[1:2], [0]))  # alone, so on the fast path
@example((ISSUE_CASES[-2:-1], [0]))
def test_every_message_lands_or_is_dead_lettered_exactly_once(batch: tuple[list[Message], list[int]]) -> None:
    messages, partitions = batch
    decoded, positions = decode(messages, partitions)

    routed = routes(decoded)
    assert sorted(routed) == sorted(positions)  # conservation: none lost, none invented
    rows = {(r["kafka_partition"], r["kafka_offset"]): r for r in decoded.rows.to_pylist()}
    letters = {(d["kafka_partition"], d["kafka_offset"]): d for d in decoded.dead_letters.to_pylist()}
    for message, position in zip(messages, positions, strict=True):
        if position in letters:
            letter = letters[position]
            assert letter["raw_value"] == message.value and letter["kafka_key"] == message.key
            assert letter["failed_checks"] and letter["reason"]
            if "message:decoder_error" in letter["failed_checks"]:
                assert "decoder error: " in letter["reason"]
        if message.poison:
            assert position in letters, message.value[:200] if message.value else message.value
        if message.event is None:
            continue
        if position in rows:
            assert_intact(rows[position], message.event)
        else:  # only a repeat of an event_id that landed from an earlier message of this batch
            assert letters[position]["failed_checks"] == ["event_id:unique_in_batch"], letters[position]["reason"]

    # The same messages behind one that breaks the bulk parse take the per-message path: same routes.
    forced, _ = decode([Message(b"{", None), *messages], [99, *partitions])
    assert {p: r for p, r in routes(forced).items() if p[0] != 99} == routed


@settings(FUZZ, max_examples=80)
@given(st.lists(purchases(), min_size=1, max_size=3, unique_by=lambda e: e["event_id"]), messages)
def test_a_message_gets_the_same_verdict_on_the_bulk_and_the_per_message_path(
    neighbours: list[Event], odd: Message
) -> None:
    """Behind valid neighbours the batch takes the bulk path whenever Arrow parses the odd message;
    behind one that breaks the bulk parse it takes the per-message path. Its verdict must not differ,
    or the same message would land from one batch and be dead-lettered (or crash) from another."""
    batch = [*(Message(encode_event(e), None, event=e) for e in neighbours), odd]
    bulk, _ = decode(batch, [0] * len(batch))
    forced, _ = decode([Message(b"{", None), *batch], [99] + [0] * len(batch))
    assert routes(bulk) == {p: r for p, r in routes(forced).items() if p[0] != 99}
