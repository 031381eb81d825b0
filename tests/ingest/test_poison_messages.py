"""Poison messages from an outside client cannot stop a topic.

A client that is not ours (kafka-python, not the platform's producer, so nothing is validated at the
edge) sends valid purchases, then messages built to break a decoder (nesting deeper than any
recursion limit, numbers beyond every type, bytes that are not UTF-8, messages at the size limit),
then more valid purchases. The real Dagster ingest job must land every valid event once, put every
poison message in ``raw.dead_letter`` once with the reason, and keep going past them.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():  # kafka-python loads its protocol schemas with a deprecated importlib API
    warnings.filterwarnings("ignore", "(read|open)_text is deprecated", DeprecationWarning)
    from kafka import KafkaProducer

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_dead_letter_table
from analytics_platform.local.orchestration import ingest_through_dagster
from analytics_platform.settings import Settings
from tests.helpers import landed

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"
Event = dict[str, Any]


def purchase(index: int, **extra: Any) -> Event:
    return {
        "event_id": f"good-{index}",
        "event_type": "purchase",
        "timestamp": f"2026-11-02T10:{index % 60:02d}:00.000Z",
        "source": "partner-app",
        "user_id": f"user-{index % 7}",
        "session_id": f"session-{index}",
        "correlation_id": f"journey-{index}",
        "payload": {
            "order_id": f"order-{index}",
            "revenue": "REVENUE",
            "item_count": 2,
            "currency": "EUR",
            "payment_method": "card",
        },
        "schema_version": 1,
        **extra,
    }


def encode(event: Event, revenue: bytes = b"19.99") -> bytes:
    """Compact JSON, with the revenue spliced in as raw bytes (so it can be a number no encoder writes)."""
    return json.dumps(event, separators=(",", ":")).encode().replace(b'"REVENUE"', revenue)


def padded_to(size: int, index: int) -> bytes:
    """A valid purchase of exactly ``size`` bytes (padded with a field no schema declares)."""
    stub = encode(purchase(index, padding=""))
    return stub.replace(b'"padding":""', b'"padding":"' + b"p" * (size - len(stub)) + b'"')


def deep_unknown_field(levels: int, *, index: int, **change: Any) -> bytes:
    """A purchase whose first field, one no schema declares, is nested ``levels`` deep (valid JSON throughout)."""
    return encode({"deep": "DEEP"} | purchase(index, **change)).replace(b'"DEEP"', b"[" * levels + b"]" * levels)


LIMIT: int = Settings.model_fields["max_event_bytes"].default  # the tests run without PLATFORM_* variables
NESTED_ARRAYS = b"[" * (LIMIT // 2) + b"]" * (LIMIT // 2)
# kind -> (value, a check its dead letter must name, words its reason must contain)
POISON: dict[str, tuple[bytes | None, str, str]] = {
    "100k nested arrays (200 kB)": (b"[" * 100_000 + b"]" * 100_000, "message:size", "PLATFORM_MAX_EVENT_BYTES"),
    "nested arrays at the size limit": (NESTED_ARRAYS, "(event):type", "wrong type"),
    "99,999-byte message of unclosed arrays": (b"[" * 99_999, "(event):type", "wrong type"),
    "nested objects at the size limit": (
        b'{"a":' * (LIMIT // 6) + b"1" + b"}" * (LIMIT // 6),
        "event_id:required",
        "missing required field event_id",
    ),
    "deep field before a wrong type": (
        deep_unknown_field(20_000, index=9001, schema_version="one"),
        "message:decoder_error",
        "decoder error: RecursionError",
    ),
    "1e400 revenue": (encode(purchase(9002), b"1e400"), "message:decoder_error", "decoder error"),
    "giant int revenue": (encode(purchase(9003), b"9" * 5_000), "payload.revenue:fits_decimal", "decimal"),
    "401-digit item_count": (
        encode(purchase(9004, payload=dict(purchase(0)["payload"], item_count=10**400)), b"1"),
        "message:decoder_error",
        "decoder error: ArrowInvalid",
    ),
    "5,000-digit item_count": (
        encode(purchase(9012, payload=dict(purchase(0)["payload"], item_count="ITEMS")), b"1").replace(
            b'"ITEMS"', b"9" * 5_000
        ),
        "payload.item_count:type",
        "out of range",
    ),
    "item_count beyond int64": (
        encode(purchase(9005, payload=dict(purchase(0)["payload"], item_count=2**63)), b"1"),
        "message:decoder_error",
        "decoder error",
    ),
    "invalid UTF-8 in a valid event": (
        encode(purchase(9006, source="SOURCE")).replace(b'"SOURCE"', b'"\xff\xfe\xed\xa0\x80"'),
        "message:utf8",
        "not valid UTF-8",
    ),
    "lone surrogate escape": (
        encode(purchase(9007, source="SOURCE")).replace(b'"SOURCE"', b'"\\ud800"'),
        "message:json",
        "surrogate",
    ),
    "byte order mark before a valid event": (b"\xef\xbb\xbf" + encode(purchase(9008)), "message:json", "JSON"),
    "raw NUL in a string": (
        encode(purchase(9009, source="a\x00b")).replace(b"\\u0000", b"\x00"),
        "message:json",
        "not a JSON document",
    ),
    "timestamp in year -1": (
        encode(purchase(9010, timestamp="-0001-11-02T10:00:00.000Z")),
        "timestamp:iso8601_utc",
        "not ISO 8601",
    ),
    "one byte over the limit": (padded_to(LIMIT + 1, 9011), "message:size", "PLATFORM_MAX_EVENT_BYTES"),
    "tombstone": (None, "message:empty", "empty message"),
}


def test_poison_from_an_outside_client_is_dead_lettered_and_the_topic_keeps_landing(broker: Settings) -> None:
    before = [purchase(i) for i in range(30)]
    after = [purchase(i) for i in range(30, 60)]
    # Valid, if odd: they land. A field no schema declares is ignored however deep it is nested.
    odd_but_valid = {
        "at the size limit": padded_to(LIMIT, 7001),
        "deep unknown field": deep_unknown_field(30_000, index=7002),
        "RTL, BOM and NUL in strings": encode(purchase(7003, source="\u202eppa\ufeff\x00")),
    }
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, max_request_size=1_000_000)
    for event in before:
        producer.send(TOPIC, value=encode(event), key=event["user_id"].encode())
    # One partition from here on, so the events after the poison are behind it in the same log.
    for value, _, _ in POISON.values():
        producer.send(TOPIC, value=value, key=b"outsider", partition=0)
    for value in odd_but_valid.values():
        producer.send(TOPIC, value=value, key=b"outsider", partition=0)
    for event in after:
        producer.send(TOPIC, value=encode(event), key=event["user_id"].encode(), partition=0)
    producer.flush(timeout=30)
    producer.close()

    runs = list(ingest_through_dagster(broker, TOPIC))

    rows = landed(broker, "purchase").to_pylist()
    expected_ids = [e["event_id"] for e in before + after] + ["good-7001", "good-7002", "good-7003"]
    assert sorted(r["event_id"] for r in rows) == sorted(expected_ids)  # once each, and those after the poison
    odd = {r["event_id"]: r for r in rows}["good-7003"]
    assert odd["source"] == "\u202eppa\ufeff\x00"

    letters = ensure_dead_letter_table(load_catalog(broker), broker).scan().to_arrow().to_pylist()
    assert len(letters) == len(POISON)
    by_value = {letter["raw_value"]: letter for letter in letters}
    assert len(by_value) == len(POISON)
    for kind, (value, check, words) in POISON.items():
        letter = by_value[value]
        assert check in letter["failed_checks"], (kind, letter["failed_checks"], letter["reason"])
        assert words in letter["reason"], (kind, letter["reason"])

    poison_offsets = [letter["kafka_offset"] for letter in letters if letter["kafka_partition"] == 0]
    after_offsets = [r["kafka_offset"] for r in rows if r["event_id"] in {e["event_id"] for e in after}]
    assert len(poison_offsets) == len(POISON) and min(after_offsets) > max(poison_offsets)  # behind the poison

    sent = len(before) + len(POISON) + len(odd_but_valid) + len(after)
    assert sum(landed_rows + dead for landed_rows, dead in runs) == sent
    positions = [(r["kafka_partition"], r["kafka_offset"]) for r in rows + letters]
    assert len(positions) == len(set(positions)) == sent
