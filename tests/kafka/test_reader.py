"""Reading to the end of the log in one pass (what a following ingest run does each poll), against the real
embedded broker: exactly the messages from the starts on, the true log ends, a bound, and the log checks."""

from __future__ import annotations

from contextlib import closing

import pytest

from analytics_platform.exceptions import OffsetMismatchError
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.reader import log_bounds, make_consumer, read_range, read_to_end
from analytics_platform.lakehouse.offsets import StoredOffsets, fingerprint
from analytics_platform.settings import Settings
from tests.helpers import produce

pytestmark = pytest.mark.integration

TOPIC = "events.user_visit"


def landed_to(settings: Settings, ends: dict[int, int]) -> StoredOffsets:
    """Offsets as Iceberg stores them after landing everything before ``ends``: with the last message's fingerprint."""
    with closing(make_consumer(settings)) as consumer:
        last = read_range(consumer, TOPIC, {p: (end - 1, end) for p, end in ends.items()}, StoredOffsets(TOPIC))
    last_values = dict(zip(last.partitions, last.values, strict=True))
    return StoredOffsets(TOPIC, dict(ends), {p: fingerprint(value) for p, value in last_values.items()})


def test_reading_to_the_end_returns_every_message_after_the_starts_and_the_true_ends(broker: Settings) -> None:
    produce(broker, 3_000)
    ends = {p: log.end for p, log in log_bounds(broker, TOPIC).items()}  # the probed (tail-read) ends
    starts = {p: end // 3 for p, end in ends.items()}
    with closing(make_consumer(broker)) as consumer:
        expected = read_range(consumer, TOPIC, {p: (starts[p], ends[p]) for p in ends}, StoredOffsets(TOPIC))
        found = read_to_end(consumer, TOPIC, starts, StoredOffsets(TOPIC), max_events=1_000_000)
    assert found.log_ends == ends
    assert found.silent == []
    assert list(zip(found.messages.partitions, found.messages.offsets, strict=True)) == list(
        zip(expected.partitions, expected.offsets, strict=True)
    )
    assert found.messages.values == expected.values
    assert len(found.messages) == sum(ends[p] - starts[p] for p in ends)


def test_a_bounded_read_takes_a_gapless_prefix_of_each_partition(broker: Settings) -> None:
    produce(broker, 3_000)
    ends = {p: log.end for p, log in log_bounds(broker, TOPIC).items()}
    with closing(make_consumer(broker)) as consumer:
        found = read_to_end(consumer, TOPIC, dict.fromkeys(ends, 0), StoredOffsets(TOPIC), max_events=500)
    assert len(found.messages) == 500
    for partition in ends:
        offsets = [o for p, o in zip(found.messages.partitions, found.messages.offsets, strict=True) if p == partition]
        assert offsets == list(range(len(offsets)))  # from the start, no gap: landable as [0, len)
        if partition in found.log_ends:  # an end is only reported for a partition read to it
            assert len(offsets) == ends[partition]


def test_a_caught_up_partition_reports_its_end_and_no_messages(broker: Settings) -> None:
    produce(broker, 600)
    ends = {p: log.end for p, log in log_bounds(broker, TOPIC).items()}
    stored = landed_to(broker, ends)
    with closing(make_consumer(broker)) as consumer:
        found = read_to_end(consumer, TOPIC, dict(ends), stored, max_events=1_000)
    assert len(found.messages) == 0
    assert found.log_ends == ends and found.silent == []


def test_a_start_past_the_end_is_silent_and_a_replaced_log_is_refused(broker: Settings) -> None:
    produce(broker, 600)
    ends = {p: log.end for p, log in log_bounds(broker, TOPIC).items()}
    stored = landed_to(broker, ends)
    embedded_broker.stop(broker)
    embedded_broker.start(broker)  # memory-only: the log starts again at 0
    create_topics(broker, broker.topic_partitions)
    produce(broker, 60, seed=11)  # shorter than the old log: every stored offset lies past the new end
    with closing(make_consumer(broker)) as consumer:
        found = read_to_end(consumer, TOPIC, dict(ends), stored, max_events=1_000)
    assert len(found.messages) == 0 and found.silent == sorted(ends)

    produce(broker, 6_000, seed=12)  # now longer: the offsets fit, the message at the last one does not
    with closing(make_consumer(broker)) as consumer, pytest.raises(OffsetMismatchError, match="different message"):
        read_to_end(consumer, TOPIC, dict(ends), stored, max_events=1_000_000)
