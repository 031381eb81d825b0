"""Bad messages mixed into a real stream: each lands once in raw.dead_letter, the good ones in raw.<type>."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from analytics_platform.events import encode_event
from analytics_platform.ingest.batch import ingest_until_caught_up, land_batch, plan_next_batch
from analytics_platform.ingest.lakehouse import dead_letter_table, load_catalog
from analytics_platform.settings import Settings
from tests.helpers import event_ids, produce

TOPIC = "events.add_to_cart"


def send_raw(settings: Settings, values: list[bytes | None]) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for value in values:
        producer.produce(TOPIC, value=value, partition=0)
    assert producer.flush(10) == 0


def bad_messages(carts: list[dict]) -> list[bytes | None]:
    """Not JSON, a tombstone, invalid UTF-8, a wrongly typed field, an event of another type."""
    wrong_type = dict(carts[0], event_id="wrong-type", payload=dict(carts[0]["payload"], quantity="two"))
    wrong_topic = dict(carts[1], event_id="wrong-topic", event_type="checkout")
    return [b"{not json", None, b"\xff\xfe", encode_event(wrong_type), encode_event(wrong_topic)]


def dead_letters(settings: Settings) -> list[dict]:
    return dead_letter_table(load_catalog(settings), settings).scan().to_arrow().to_pylist()


def test_every_message_lands_in_exactly_one_table(broker: Settings) -> None:
    carts = [e for e in produce(broker, 3_000) if e["event_type"] == "add_to_cart"]
    bad = bad_messages(carts)
    send_raw(broker, bad)
    ingest_until_caught_up(broker, TOPIC)
    letters = dead_letters(broker)
    assert sorted(letter["raw_value"] or b"" for letter in letters) == sorted(value or b"" for value in bad)
    assert all(letter["reason"] and letter["kafka_topic"] == TOPIC for letter in letters)
    assert sorted(event_ids(broker, "add_to_cart")) == sorted(e["event_id"] for e in carts)


def test_crash_between_dead_letter_and_raw_commit_does_not_duplicate(broker: Settings) -> None:
    send_raw(broker, [b"{not json", b"[1, 2]"])
    produce(broker, 1_000)
    plan = plan_next_batch(broker, TOPIC)
    assert plan is not None

    def crash() -> None:
        raise RuntimeError("killed between the two commits")

    with pytest.raises(RuntimeError):
        land_batch(broker, plan, after_dead_letters=crash)
    assert len(dead_letters(broker)) == 2 and event_ids(broker, "add_to_cart") == []
    result = land_batch(broker, plan)  # the retry: dead letters found by batch id, rows land once
    assert len(dead_letters(broker)) == 2
    assert result.rows_landed + 2 == plan.size == len(event_ids(broker, "add_to_cart")) + 2
