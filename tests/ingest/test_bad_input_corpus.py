"""A corpus of bad input mixed into a valid stream on the real broker.

Every bad message must land in ``raw.dead_letter`` once, with its original bytes and the check that
names what is wrong; every good one in ``raw.purchase``; the counts conserve exactly and no run fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_dead_letter_table
from analytics_platform.settings import Settings
from tests.helpers import landed

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"
Event = dict[str, Any]


def purchase(index: int) -> Event:
    return {
        "event_id": f"good-{index}",
        "event_type": "purchase",
        "timestamp": f"2026-11-02T10:{index % 60:02d}:00.000Z",
        "source": "web",
        "user_id": f"user-{index % 7}",
        "session_id": f"session-{index}",
        "correlation_id": f"journey-{index}",
        "payload": {
            "order_id": f"order-{index}",
            "revenue": 19.99,
            "item_count": 2,
            "currency": "EUR",
            "payment_method": "card",
        },
        "schema_version": 1,
    }


def changed(change: Callable[[Event], None], index: int) -> Event:
    event = purchase(1000 + index)
    event["event_id"] = f"bad-{index}"
    change(event)
    return event


def payload(**fields: Any) -> Callable[[Event], None]:
    return lambda event: event["payload"].update(fields)


def envelope(**fields: Any) -> Callable[[Event], None]:
    return lambda event: event.update(fields)


def without(*path: str) -> Callable[[Event], None]:
    def remove(event: Event) -> None:
        target = event
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return remove


VALID_PURCHASE = encode_event(purchase(999))
# kind -> (value, key or None for the event's user_id, the check that must be among the failed ones)
CORPUS: dict[str, tuple[bytes | None, bytes | None, str]] = {
    "malformed json": (b'{"event_id": "x", ', b"user-1", "message:json"),
    "truncated event": (VALID_PURCHASE[:-20], b"user-1", "message:json"),
    "not json at all": (b"hello kafka", b"user-1", "message:json"),
    "invalid utf-8": (b'{"event_id": "\xff\xfe"}', b"user-1", "message:utf8"),
    "empty message": (b"", b"user-1", "message:empty"),
    "null value (tombstone)": (None, b"user-1", "message:empty"),
    "json array": (b"[1, 2, 3]", b"user-1", "(event):type"),
    "json number": (b"42", b"user-1", "(event):type"),
    "payload not an object": (encode_event(changed(envelope(payload="x"), 1)), None, "payload:type"),
    "missing envelope field": (encode_event(changed(without("session_id"), 2)), None, "session_id:required"),
    "missing payload field": (
        encode_event(changed(without("payload", "revenue"), 3)),
        None,
        "payload.revenue:required",
    ),
    "required field is null": (encode_event(changed(payload(order_id=None), 4)), None, "payload.order_id:required"),
    "envelope field wrong type": (encode_event(changed(envelope(user_id=123), 5)), b"123", "user_id:type"),
    "payload field wrong type": (
        encode_event(changed(payload(item_count="three"), 6)),
        None,
        "payload.item_count:type",
    ),
    "unknown event_type": (encode_event(changed(envelope(event_type="refund"), 7)), None, "event_type:matches_topic"),
    "event of another topic": (
        encode_event(changed(envelope(event_type="checkout"), 8)),
        None,
        "event_type:matches_topic",
    ),
    "unknown schema_version": (
        encode_event(changed(envelope(schema_version=99), 9)),
        None,
        "schema_version:known_version",
    ),
    "far-future timestamp": (
        encode_event(changed(envelope(timestamp="2999-01-01T00:00:00.000Z"), 10)),
        None,
        "event_at:in_bounds",
    ),
    "pre-epoch timestamp": (
        encode_event(changed(envelope(timestamp="1969-12-31T23:59:59.000Z"), 11)),
        None,
        "event_at:in_bounds",
    ),
    "unparseable timestamp": (
        encode_event(changed(envelope(timestamp="yesterday"), 12)),
        None,
        "timestamp:iso8601_utc",
    ),
    "timestamp without zone": (
        encode_event(changed(envelope(timestamp="2026-11-02 10:00:00"), 13)),
        None,
        "timestamp:iso8601_utc",
    ),
    "negative price": (encode_event(changed(payload(revenue=-5.0), 14)), None, "payload.revenue:non_negative"),
    "negative quantity": (encode_event(changed(payload(item_count=-1), 15)), None, "payload.item_count:non_negative"),
    "unknown currency": (encode_event(changed(payload(currency="XYZ"), 16)), None, "payload.currency:currency_code"),
    "lower-case currency": (encode_event(changed(payload(currency="eur"), 17)), None, "payload.currency:currency_code"),
    "int overflow": (encode_event(changed(payload(item_count=2**40), 18)), None, "payload.item_count:fits_int32"),
    "amount beyond decimal(12,2)": (
        encode_event(changed(payload(revenue=1e15), 19)),
        None,
        "payload.revenue:fits_decimal",
    ),
    "1 MB payload": (
        encode_event(changed(payload(payment_method="x" * 900_000), 20)),
        None,
        "message:size",
    ),
    "duplicate event_id in the batch": (
        encode_event(dict(purchase(41), session_id="replayed-by-a-buggy-client")),  # purchase(41) comes first
        b"user-6",
        "event_id:unique_in_batch",
    ),
    "duplicate event_id of an earlier batch": (encode_event(purchase(0)), b"user-0", "event_id:not_already_landed"),
}


def send(settings: Settings, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "message.max.bytes": 2_000_000})
    for value, key in messages:
        producer.produce(TOPIC, value=value, key=key or None)
    assert producer.flush(30) == 0


def key_of(event: Event) -> bytes:
    return str(event["user_id"]).encode()


def test_every_kind_of_bad_input_lands_in_dead_letter_with_its_reason(broker: Settings) -> None:
    first = [purchase(i) for i in range(40)]
    send(broker, [(encode_event(e), key_of(e)) for e in first])
    ingest_until_caught_up(broker, TOPIC)  # the batch the cross-batch duplicate repeats

    second = [purchase(i) for i in range(40, 120)]
    stream: list[tuple[bytes | None, bytes | None]] = []
    for index, (value, key, _) in enumerate(CORPUS.values()):
        good = second[index]
        stream.append((encode_event(good), key_of(good)))
        stream.append((value, key if key is not None else b"user-" + str((1000 + index) % 7).encode()))
    stream += [(encode_event(e), key_of(e)) for e in second[len(CORPUS) :]]
    # Valid but unusual: pretty-printed JSON with newlines, a field no schema declares, and keys that are
    # not the user_id (none at all, or event_type:event_id as the seed's producer example keys): a key is
    # the producer's partitioning choice, not part of the event's contract, so all of these land.
    pretty = dict(purchase(500))
    drifted = dict(purchase(501), payload=dict(purchase(501)["payload"], coupon="WINTER"))
    unkeyed, keyed_by_id = purchase(502), purchase(503)
    stream += [
        (encode_event(pretty).replace(b",", b",\n  "), key_of(pretty)),
        (encode_event(drifted), key_of(drifted)),
        (encode_event(unkeyed), None),
        (encode_event(keyed_by_id), f"purchase:{keyed_by_id['event_id']}".encode()),
    ]
    send(broker, stream)

    results = ingest_until_caught_up(broker, TOPIC)

    letters = ensure_dead_letter_table(load_catalog(broker), broker).scan().to_arrow().to_pylist()
    by_value = {letter["raw_value"]: letter for letter in letters}
    assert len(letters) == len(by_value) == len(CORPUS)
    for kind, (value, _, check) in CORPUS.items():
        letter = by_value[value]
        assert check in letter["failed_checks"], (kind, letter["failed_checks"], letter["reason"])
        assert letter["reason"] and letter["kafka_topic"] == TOPIC, kind
    assert by_value[CORPUS["unknown schema_version"][0]]["schema_version"] == 99

    rows = landed(broker, "purchase")
    expected_good = [*first, *second, pretty, drifted, unkeyed, keyed_by_id]
    assert sorted(rows.column("event_id").to_pylist()) == sorted(e["event_id"] for e in expected_good)
    consumed = len(first) + len(stream)
    assert rows.num_rows + len(letters) == consumed  # conservation: every offset in exactly one table
    offsets = sorted(
        [
            (r["kafka_partition"], r["kafka_offset"])
            for r in rows.select(["kafka_partition", "kafka_offset"]).to_pylist()
        ]
        + [(letter["kafka_partition"], letter["kafka_offset"]) for letter in letters]
    )
    assert len(set(offsets)) == consumed
    assert sum(result.keys_not_user_id for result in results) == 2  # counted (a warning check), never rejected
    assert results[-1].unknown_fields == ["payload.coupon"]
