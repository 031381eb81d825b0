"""The bulk decoder: typed rows for good messages, a dead letter with a reason for every bad one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.contracts.registry import load_registry
from analytics_platform.ingest.decode import decode_batch
from analytics_platform.ingest.gate import GateContext
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
    except (msgspec.DecodeError, UnicodeDecodeError, AttributeError):
        return b"k"


def batch(values: list[bytes | None]) -> RawMessages:
    n = len(values)
    keys = [user_key(value) for value in values]
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
