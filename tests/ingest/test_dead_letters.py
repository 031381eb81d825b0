"""Bad messages mixed into a real stream: each lands once in raw.dead_letter, the good ones in raw.<type>."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.ingest.plan import plan_next_batch
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_dead_letter_table
from analytics_platform.local.orchestration import ingest_through_dagster
from analytics_platform.settings import Settings
from tests.helpers import event_ids, landed, produce

pytestmark = pytest.mark.integration

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
    return ensure_dead_letter_table(load_catalog(settings), settings).scan().to_arrow().to_pylist()


def test_every_message_lands_in_exactly_one_table(broker: Settings) -> None:
    carts = [e for e in produce(broker, 3_000) if e["event_type"] == "add_to_cart"]
    bad = bad_messages(carts)
    send_raw(broker, bad)
    ingest_until_caught_up(broker, TOPIC)
    letters = dead_letters(broker)
    assert sorted(letter["raw_value"] or b"" for letter in letters) == sorted(value or b"" for value in bad)
    assert all(letter["reason"] and letter["kafka_topic"] == TOPIC for letter in letters)
    assert sorted(event_ids(broker, "add_to_cart")) == sorted(e["event_id"] for e in carts)


KILL_BETWEEN_THE_WRITES = """
import json, os, signal, sys
from analytics_platform.ingest.land import land_batch
from analytics_platform.ingest.plan import BatchPlan
from analytics_platform.settings import get_settings
plan = BatchPlan.from_config(json.loads(sys.argv[1]))
land_batch(get_settings(), plan, after_dead_letters=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_run_killed_between_the_two_writes_then_retried_conserves_every_offset(broker: Settings) -> None:
    send_raw(broker, [b"{not json", b"[1, 2]"])
    produce(broker, 1_000)
    plan = plan_next_batch(broker, TOPIC)
    assert plan is not None

    killed = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_THE_WRITES, json.dumps(plan.to_config())], capture_output=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(dead_letters(broker)) == 2 and event_ids(broker, "add_to_cart") == []  # died after the first write

    runs = list(ingest_through_dagster(broker, TOPIC))  # the retry, as a real Dagster run
    assert runs == [(plan.size - 2, 2)]  # the batch has 2 dead letters, found by batch id: not written twice
    letters = dead_letters(broker)
    assert len(letters) == 2
    rows = landed(broker, "add_to_cart").select(["kafka_partition", "kafka_offset"]).to_pylist()
    places = [(r["kafka_partition"], r["kafka_offset"]) for r in rows]
    places += [(letter["kafka_partition"], letter["kafka_offset"]) for letter in letters]
    expected = [(p, offset) for p, (start, end) in plan.ranges.items() for offset in range(start, end)]
    assert sorted(places) == sorted(expected)  # every consumed offset in exactly one table
