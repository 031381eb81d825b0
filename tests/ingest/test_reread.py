"""Re-reading a topic's range from Kafka lands exactly what never landed, once, and nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from analytics_platform.contracts.envelope import encode_event, event_types
from analytics_platform.exceptions import InvalidRequestError
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.ingest.reread import offsets_for_times, reread
from analytics_platform.kafka.reader import log_bounds
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import reset_offsets, stored_offsets
from analytics_platform.lakehouse.tables import ensure_raw_table, read_dead_letters
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import generate_events
from tests.helpers import landed

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"
BASE_MS = 1_790_000_000_000  # message timestamps set by the producer: one second apart


def _send(settings: Settings, events: list[dict], first_second: int, partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for index, event in enumerate(events):
        producer.produce(
            TOPIC,
            value=encode_event(event),
            key=event["user_id"].encode(),
            partition=partition,
            timestamp=BASE_MS + (first_second + index) * 1000,
        )
    assert producer.flush(30) == 0


def test_reread_lands_the_skipped_offsets_once_and_recognises_the_rest(broker: Settings) -> None:
    purchases = [e for e in generate_events(6_000, seed=5) if e["event_type"] == "purchase"][:60]
    skipped, kept = purchases[:20], purchases[20:]
    resent = dict(kept[0])  # a producer re-sent an event that lands later through another offset
    broken = dict(skipped[5], event_id="broken-1", payload=dict(skipped[5]["payload"], revenue=-1))
    gap = [*skipped, resent, broken]  # offsets 0..21 on partition 0
    _send(broker, gap, 0)
    _send(broker, kept, len(gap))
    catalog = load_catalog(broker)
    table = ensure_raw_table(catalog, broker, event_types()["purchase"])
    end = len(gap) + len(kept)
    # An operator skipped the first messages (as `offsets reset` does after a poison region):
    reset_offsets(table, TOPIC, {0: len(gap), 1: 0, 2: 0}, reason="test: skip the gap")
    ingest_until_caught_up(broker, TOPIC)
    assert sorted(landed(broker, "purchase")["event_id"].to_pylist()) == sorted(e["event_id"] for e in kept)
    offsets_before = stored_offsets(table.refresh(), TOPIC).next_offsets

    result = reread(broker, TOPIC, {0: (0, end)}, reread_id="test-1")

    assert result.counts() == {
        "offsets": end,
        "already_landed": len(kept),
        "already_dead_lettered": 0,
        "landed": len(skipped),
        "dead_lettered": 2,  # the re-sent duplicate and the broken event
        "left_to_ingestion": 0,
    }
    rows = landed(broker, "purchase")
    assert sorted(rows["event_id"].to_pylist()) == sorted(e["event_id"] for e in purchases)  # each once
    by_offset = dict(zip(rows["kafka_offset"].to_pylist(), rows["event_id"].to_pylist(), strict=True))
    assert [by_offset[o] for o in range(len(skipped))] == [e["event_id"] for e in skipped]  # original coordinates
    letters = read_dead_letters(catalog, broker).to_pylist()
    assert sorted(letter["kafka_offset"] for letter in letters) == [len(skipped), len(skipped) + 1]
    assert stored_offsets(table.refresh(), TOPIC).next_offsets == offsets_before  # ingestion's place unchanged

    again = reread(broker, TOPIC, {0: (0, end)}, reread_id="test-1")
    assert again.counts() | {"offsets": 0} == {
        "offsets": 0,
        "already_landed": end - 2,
        "already_dead_lettered": 2,
        "landed": 0,
        "dead_lettered": 0,
        "left_to_ingestion": 0,
    }
    assert landed(broker, "purchase").num_rows == len(purchases)


def test_offsets_past_the_stored_ones_are_left_to_ingestion(broker: Settings) -> None:
    purchases = [e for e in generate_events(3_000, seed=6) if e["event_type"] == "purchase"][:10]
    _send(broker, purchases, 0)
    result = reread(broker, TOPIC, {0: (0, 10)}, reread_id="test-2")
    assert result.counts()["left_to_ingestion"] == 10
    assert result.counts()["landed"] == 0
    assert landed(broker, "purchase").num_rows == 0
    ingest_until_caught_up(broker, TOPIC)
    assert landed(broker, "purchase").num_rows == 10


def test_a_time_range_maps_to_the_offsets_of_its_messages(broker: Settings) -> None:
    purchases = [e for e in generate_events(3_000, seed=8) if e["event_type"] == "purchase"][:30]
    _send(broker, purchases[:20], 0, partition=0)
    _send(broker, purchases[20:], 0, partition=1)

    def at(second: int) -> datetime:
        return datetime.fromtimestamp((BASE_MS + second * 1000) / 1000, UTC)

    assert offsets_for_times(broker, TOPIC, at(5), at(12)) == {0: (5, 12), 1: (5, 10), 2: (0, 0)}
    assert offsets_for_times(broker, TOPIC, at(-5), at(100), partitions=[0]) == {0: (0, 20)}
    assert offsets_for_times(broker, TOPIC, at(4), at(4)) == {0: (4, 4), 1: (4, 4), 2: (0, 0)}


def test_a_range_the_log_does_not_hold_is_refused_with_what_it_holds(broker: Settings) -> None:
    purchases = [e for e in generate_events(3_000, seed=9) if e["event_type"] == "purchase"][:5]
    _send(broker, purchases, 0)
    assert log_bounds(broker, TOPIC)[0].end == 5
    with pytest.raises(InvalidRequestError, match=r"holds offsets 0\.\.4; the range 0\.\.9"):
        reread(broker, TOPIC, {0: (0, 10)}, reread_id="test-3")
    with pytest.raises(InvalidRequestError, match="has no partition 7"):
        reread(broker, TOPIC, {7: (0, 1)}, reread_id="test-3")
