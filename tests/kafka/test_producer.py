"""Edge validation in the producer, against the real embedded broker.

Valid events reach ``events.<type>``; invalid ones never do and go to the dead-letter topic as
schema-mismatch records; with a Confluent registry configured every message carries its schema id.
Topics are read back with ``assign()`` from offset 0 until the log stays quiet: Tansu's high
watermarks are not exact, so they are not used as the end.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.contracts.registry import load_registry
from analytics_platform.kafka.producer import SCHEMA_ID_HEADER, EventProducer, producer_options
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from tests.conftest import set_environment

pytestmark = pytest.mark.integration

QUIET_POLLS = 10  # consecutive empty polls of POLL_S (~2 s of silence) mean the end of the log
POLL_S = 0.2
READ_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Read:
    """One message read back."""

    topic: str
    key: bytes | None
    value: Any  # the decoded JSON, decimals as Decimal
    headers: dict[str, bytes]


def read_all(bootstrap_servers: str, topics: list[str]) -> list[Read]:
    """Every message of ``topics``, each partition from offset 0, until no message arrived for ~2 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"producer-edge-test-{uuid.uuid4().hex}",  # required by the client; never joined
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        assignment = []
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            assert metadata.error is None, f"{topic}: {metadata.error}"
            assignment += [TopicPartition(topic, partition, 0) for partition in sorted(metadata.partitions)]
        consumer.assign(assignment)
        messages: list[Read] = []
        quiet, deadline = 0, time.monotonic() + READ_DEADLINE_S
        while quiet < QUIET_POLLS:
            assert time.monotonic() < deadline, f"{topics} kept delivering for {READ_DEADLINE_S}s"
            message = consumer.poll(POLL_S)
            if message is None:
                quiet += 1
                continue
            quiet = 0
            assert message.error() is None, message.error()
            raw_headers = message.headers() or []  # a list of (name, value) pairs; the stubs also allow a dict
            pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            headers = {name: value for name, value in pairs if isinstance(value, bytes)}
            value = json.loads(message.value() or b"null", parse_float=Decimal)
            messages.append(Read(str(message.topic()), message.key(), value, headers))
        return messages
    finally:
        consumer.close()


def purchase_event() -> dict[str, Any]:
    """A valid purchase envelope to break in one way per test case."""
    return copy.deepcopy(next(e for e in generate_events(200, seed=1) if e["event_type"] == "purchase"))


def test_valid_events_all_land_on_their_topics(broker: Settings) -> None:
    events = generate_events(200, seed=1)

    with EventProducer(broker, **producer_options(broker)) as producer:
        results = [producer.send(event) for event in events]
    landed = read_all(broker.bootstrap_servers, event_topics())

    assert results == [None] * len(events)
    assert producer.delivered == len(events) and producer.rejected == []
    assert Counter(m.value["event_id"] for m in landed) == Counter(e["event_id"] for e in events)  # once each
    by_id = {m.value["event_id"]: m for m in landed}
    for event in events:
        message = by_id[event["event_id"]]
        assert message.topic == f"events.{event['event_type']}"
        assert message.key == event["user_id"].encode()
        assert message.value == event
        assert SCHEMA_ID_HEADER not in message.headers  # no Confluent registry configured


def test_invalid_events_go_to_the_dead_letter_topic_only(broker: Settings) -> None:
    wrong_type = purchase_event()
    wrong_type["payload"]["item_count"] = "two"
    missing_field = purchase_event()
    del missing_field["payload"]["payment_method"]
    unknown_type = {**purchase_event(), "event_type": "refund"}
    unknown_version = {**purchase_event(), "schema_version": 7}
    not_a_dict = [purchase_event()]
    invalid: list[Any] = [wrong_type, missing_field, unknown_type, unknown_version, not_a_dict]
    for event in invalid[:4]:
        event["event_id"] = str(uuid.uuid4())
    canary = purchase_event()  # a valid event, so "nothing invalid landed" is not an empty read

    with EventProducer(broker, **producer_options(broker)) as producer:
        rejections = [producer.send(event) for event in invalid]
        assert producer.send(canary) is None

    errors = [rejection.error if rejection else "" for rejection in rejections]
    assert "payload.item_count" in errors[0] and "int" in errors[0]
    assert "payment_method" in errors[1] and "missing" in errors[1]
    assert "unknown event_type 'refund'" in errors[2]
    assert "schema_version 7" in errors[3] and "no schema version 7" in errors[3]
    assert "JSON object, not list" in errors[4]
    assert producer.rejected == rejections

    landed = read_all(broker.bootstrap_servers, event_topics())
    assert [m.value["event_id"] for m in landed] == [canary["event_id"]]

    dead = read_all(broker.bootstrap_servers, [broker.dead_letter_topic])
    assert len(dead) == len(invalid)
    records = sorted((m.value for m in dead), key=lambda r: errors.index(r["error"]))
    purchase_v1 = load_registry(broker.schema_path).contract("purchase").version(1)
    expected_schema = {"subject": "purchase", "version": 1, "schema": purchase_v1.schema}
    for record, event, error in zip(records, invalid, errors, strict=True):
        assert record["kind"] == "schema_mismatch"
        assert record["error"] == error
        assert record["event"] == event
        assert record["rejected_at"]
    assert [r["expected_schema"] for r in records] == [expected_schema, expected_schema, None, expected_schema, None]


def test_messages_carry_the_confluent_schema_id(broker: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, PLATFORM_SCHEMA_REGISTRY_URL="mock://edge-test")
    options = producer_options(get_settings())
    events = generate_events(200, seed=1, reference_data=True)  # every event type, so every subject

    with EventProducer(broker, **options) as producer:
        for event in events:
            assert producer.send(event) is None
    landed = read_all(broker.bootstrap_servers, event_topics())

    assert len(landed) == len(events)
    registry = options["registry"]
    # The same ConfluentRegistry answers again from its per-process cache: the ids it registered.
    expected_ids = {c.event_type: options["schema_ids"](c.version(1)) for c in registry}
    ids_by_type: dict[str, set[bytes]] = {}
    for message in landed:
        ids_by_type.setdefault(message.value["event_type"], set()).add(message.headers[SCHEMA_ID_HEADER])
    assert ids_by_type == {name: {str(schema_id).encode()} for name, schema_id in expected_ids.items()}
    assert len(set(expected_ids.values())) == len(expected_ids)  # one subject, one schema, one id per type
