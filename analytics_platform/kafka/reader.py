"""Reading exact offset ranges from Kafka with ``assign()`` (no consumer group, no committed offsets).

Offsets live in Iceberg, so the consumer never joins a group: it is assigned the partitions at the
stored positions and reads to a known end. The end is probed by reading the log's tail rather than
trusted from the high watermark, which Tansu reports as the base offset of the last batch + 1; a
following run instead reads to the end of the log in one pass (:func:`read_to_end`).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from analytics_platform.exceptions import BrokerError, OffsetMismatchError, TransientError
from analytics_platform.kafka.client_config import client_config
from analytics_platform.lakehouse.offsets import StoredOffsets, fingerprint
from analytics_platform.settings import Settings

METADATA_TIMEOUT_S = 10.0
STALL_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0
# An end-of-partition event before the planned end is only believed once nothing follows it:
# Tansu's wrong high watermark can raise it in the middle of the last record batch.
EARLY_EOF_GRACE_S = 2.0
# Reading to the end of the log, a partition that answers neither a message nor its end for this long is
# given up on for the poll (ReadToEnd.silent): its start is past the log's end, or the broker is struggling.
SILENT_AFTER_S = 10.0
CONSUME_CHUNK = 10_000
# _GC_NOTE: reading a batch allocates ~100k message objects, which triggers full garbage collections
# over everything Dagster and dbt keep alive in a run process; with the collector paused while
# reading (the batch is bounded, and it holds no cycles), the read took 1.0 s instead of 2.4 s per
# 300k messages (bench/run.py).

RESET_HINT = (
    "The embedded broker keeps its log in memory, so restarting it starts every topic again at offset 0 "
    "while Iceberg still holds the old offsets. Keep the landed rows and continue from the new log with "
    "`analytics-platform offsets reset --topic {topic}`, or start from scratch with "
    "`analytics-platform reset --yes` (deletes the platform home)."
)


def make_consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": "analytics-platform-ingest",  # required by the client; never joined (assign only)
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",  # an out-of-range position is a mismatch, never a silent jump
            "fetch.queue.backoff.ms": 5,  # the 1000 ms default halves throughput
            "fetch.wait.max.ms": 10,  # we only read data that exists: do not wait 500 ms at end of log
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )


@dataclass(frozen=True)
class LogBounds:
    """A partition's first retained offset and the offset the next produced message will get."""

    start: int
    end: int


@dataclass(frozen=True)
class HeadedMessage:
    """A message of a batch that carried headers: kept for its trace context (a sample, see read_range)."""

    partition: int
    offset: int
    headers: list[tuple[str, str | bytes | None]]
    value: bytes | None


@dataclass
class RawMessages:
    """Messages of one batch, column-wise, in (partition, offset) order."""

    topic: str
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    """Kafka timestamps (ms since the epoch; -1 if none) of the messages, when the reader recorded them."""
    headed: list[HeadedMessage] = field(default_factory=list)
    """The first messages with headers of each partition, as many as ``read_range`` was asked to keep."""

    def __len__(self) -> int:
        return len(self.offsets)


def _offset(message: Message) -> int:
    """A fetched message always has an offset; the client's type says it may not."""
    offset = message.offset()
    if offset is None:
        raise TransientError(f"message without an offset from {message.topic()}[{message.partition()}]")
    return offset


def topic_partitions(consumer: Consumer, topic: str) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except Exception as error:
        raise TransientError(f"cannot read metadata of {topic}: {error}") from error
    topic_metadata = metadata.topics.get(topic)
    if topic_metadata is None or topic_metadata.error is not None or not topic_metadata.partitions:
        raise BrokerError(
            f"topic {topic} does not exist on the broker; create it with `analytics-platform topics create`."
        )
    return sorted(topic_metadata.partitions)


def _every_partition(partition: int) -> bool:
    return True


def probe_log_bounds(
    consumer: Consumer, topic: str, wanted: Callable[[int], bool] = _every_partition
) -> dict[int, LogBounds]:
    """Each (``wanted``) partition's true end offset: read from just before the high watermark to end of log."""
    bounds: dict[int, LogBounds] = {}
    tails: list[TopicPartition] = []
    for partition in filter(wanted, topic_partitions(consumer, topic)):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_S)
        bounds[partition] = LogBounds(max(low, 0), max(high, 0))
        if high > 0:
            tails.append(TopicPartition(topic, partition, max(high - 1, low)))
    if not tails:
        return bounds
    consumer.assign(tails)
    pending = {tp.partition for tp in tails}
    # Any offset read exists, so its successor is a safe end even if the log grows faster than the
    # probe reads (a busy producer): past the deadline, settle for what was seen.
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    try:
        while pending and time.monotonic() < deadline:
            # A short timeout: consume(n) waits it out unless n messages arrive.
            for message in consumer.consume(CONSUME_CHUNK, timeout=0.02):
                error = message.error()
                partition = int(message.partition() or 0)
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise TransientError(f"reading the tail of {topic}[{partition}] failed: {error}")
                    pending.discard(partition)
                else:
                    old = bounds[partition]
                    bounds[partition] = LogBounds(old.start, max(old.end, _offset(message) + 1))
    finally:
        consumer.unassign()
    return bounds


def log_bounds(
    settings: Settings, topic: str, wanted: Callable[[int], bool] = _every_partition
) -> dict[int, LogBounds]:
    """:func:`probe_log_bounds` with a consumer of its own, closed afterwards."""
    consumer = make_consumer(settings)
    try:
        return probe_log_bounds(consumer, topic, wanted)
    finally:
        consumer.close()


def check_stored_offsets(
    stored: StoredOffsets, bounds: dict[int, LogBounds], wanted: Callable[[int], bool] = _every_partition
) -> None:
    """Refuse to go on when Iceberg's offsets (of the ``wanted`` partitions, those ``bounds`` was probed
    for) do not fit the log: never skip or re-read silently."""
    for partition, next_offset in sorted(stored.next_offsets.items()):
        if not wanted(partition):
            continue
        log = bounds.get(partition)
        if log is None:
            raise OffsetMismatchError(
                f"{stored.topic} has no partition {partition}, but Iceberg holds offsets for it. "
                + RESET_HINT.format(topic=stored.topic)
            )
        if next_offset > log.end:
            raise OffsetMismatchError(
                f"{stored.topic}[{partition}] ends at offset {log.end}, but Iceberg has already landed "
                f"everything before offset {next_offset} (snapshot {stored.snapshot_id}): the Kafka log was "
                "replaced or truncated. " + RESET_HINT.format(topic=stored.topic)
            )
        if next_offset < log.start:
            raise OffsetMismatchError(
                f"{stored.topic}[{partition}] now starts at offset {log.start}, past the next offset to "
                f"land ({next_offset}): messages {next_offset}..{log.start - 1} were deleted by retention "
                "before they were ingested. " + RESET_HINT.format(topic=stored.topic)
            )


def read_range(
    consumer: Consumer,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    stored: StoredOffsets,
    keep_headed: int = 0,
) -> RawMessages:
    """Exactly the messages with ``start <= offset < end`` per partition.

    Where a previous batch landed, reading starts one message early to compare that message with
    the stored fingerprint: a different message at the same offset means a different log.
    ``keep_headed``: keep the headers of the first that many messages of each partition that have any
    (for the trace contexts the batch's span links to); 0 reads no headers.
    """
    todo = {p: (start, end) for p, (start, end) in ranges.items() if end > start}
    if not todo:
        return RawMessages(topic)
    return _Read(consumer, topic, todo, stored, keep_headed).run().messages()


@dataclass(frozen=True)
class ReadToEnd:
    """What :func:`read_to_end` found: the messages, and the log end of each partition whose end it reached."""

    messages: RawMessages
    log_ends: dict[int, int]
    silent: list[int]
    """Partitions that answered neither a message nor their end: a start past the log's end does that."""


def read_to_end(
    consumer: Consumer,
    topic: str,
    starts: dict[int, int],
    stored: StoredOffsets,
    max_events: int,
    keep_headed: int = 0,
) -> ReadToEnd:
    """Each partition's messages from ``starts`` to the end of its log (at most ``max_events`` in all), in one
    pass: what a following run lands each poll, without probing the end first.

    On the embedded broker each fetch below the high watermark lists every stored record batch of the
    partition (docs/performance.md, the soak), so a poll that probed the end and then read cost twice the
    fetches. The end of log event carries the true end (the fetch's, not Tansu's wrong ListOffsets answer),
    which also gives the lag. Checks the stored fingerprint as :func:`read_range` does.
    """
    read = _Read(consumer, topic, {p: (start, None) for p, start in starts.items()}, stored, keep_headed, max_events)
    read.run()
    answered = set(read.log_ends) | {p for p, got in read.per_partition.items() if len(got)}
    return ReadToEnd(read.messages(), dict(read.log_ends), sorted(set(starts) - answered))


class _Read:
    """One assignment read: to a planned end per partition, or (end None) to the end of the log."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        todo: Mapping[int, tuple[int, int | None]],
        stored: StoredOffsets,
        keep_headed: int,
        max_events: int | None = None,
    ) -> None:
        self.consumer, self.topic, self.todo, self.keep_headed = consumer, topic, todo, keep_headed
        self.max_events = max_events
        self.limit = sys.maxsize if max_events is None else max_events
        self.verify = {
            p: stored.fingerprints[p]
            for p, (start, _) in todo.items()
            if start > 0 and stored.fingerprints.get(p) and stored.next_offset(p) == start
        }
        self.per_partition = {p: RawMessages(topic) for p in todo}
        self.position = {p: start for p, (start, _) in todo.items()}
        self.log_ends: dict[int, int] = {}
        """To the end: the partitions whose end of log was reached, at that offset."""
        self.early_eof: dict[int, int] = {}
        """To a planned end: partitions that reported their end before it."""
        self.taken = 0

    def _pending(self) -> bool:
        if self.taken >= self.limit:
            return False
        return any(
            p not in self.log_ends if end is None else self.position[p] < end for p, (_, end) in self.todo.items()
        )

    def _wanted(self) -> int:
        """Messages still to ask for: consume(n) returns early only once n messages arrived."""
        if self.max_events is not None:
            return min(CONSUME_CHUNK, self.max_events - self.taken + len(self.verify))
        remaining = sum(max(int(end or 0) - self.position[p], 0) for p, (_, end) in self.todo.items())
        return min(CONSUME_CHUNK, remaining + len(self.verify))

    def run(self) -> _Read:
        to_end = self.max_events is not None
        first = {p: start - 1 if p in self.verify else start for p, (start, _) in self.todo.items()}
        self.consumer.assign([TopicPartition(self.topic, p, offset) for p, offset in first.items()])
        last_progress = time.monotonic()
        collecting = gc.isenabled()
        try:
            gc.disable()  # see _GC_NOTE
            while self._pending():
                batch = self.consumer.consume(self._wanted(), timeout=0.05 if to_end else 0.2)
                idle_s = time.monotonic() - last_progress
                if batch:
                    last_progress = time.monotonic()
                elif to_end and idle_s > SILENT_AFTER_S:
                    break  # the partitions still open are silent (ReadToEnd.silent)
                elif self.early_eof and idle_s > EARLY_EOF_GRACE_S:
                    partition, at = next(iter(self.early_eof.items()))
                    raise OffsetMismatchError(
                        f"{self.topic}[{partition}] ended at offset {at} while offsets up to "
                        f"{int(self.todo[partition][1] or 0) - 1} were planned: the log shrank. "
                        + RESET_HINT.format(topic=self.topic)
                    )
                elif idle_s > STALL_TIMEOUT_S:
                    raise TransientError(
                        f"no progress reading {self.topic} for {STALL_TIMEOUT_S:.0f}s; positions {self.position}, "
                        f"wanted {self.todo}"
                    )
                for message in batch:
                    self._take(message)
        finally:
            if collecting:
                gc.enable()
            self.consumer.unassign()
        return self

    def _take(self, message: Message) -> None:
        partition = int(message.partition() or 0)
        error = message.error()
        start, end = self.todo[partition]
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if end is None:
                    self.log_ends[partition] = max(_offset(message), self.position[partition])
                elif self.position[partition] < end:
                    self.early_eof[partition] = _offset(message)
                return
            if error.code() == KafkaError._AUTO_OFFSET_RESET:
                raise OffsetMismatchError(
                    f"{self.topic}[{partition}]: offset {start} is out of range "
                    f"({error}). " + RESET_HINT.format(topic=self.topic)
                )
            raise TransientError(f"reading {self.topic}[{partition}] failed: {error}")
        offset = _offset(message)
        self.early_eof.pop(partition, None)
        if offset < start:
            if partition in self.verify and fingerprint(message.value()) != self.verify[partition]:
                raise OffsetMismatchError(
                    f"{self.topic}[{partition}] offset {offset} holds a different message than the one "
                    "landed in Iceberg: the Kafka log was replaced. " + RESET_HINT.format(topic=self.topic)
                )
            self.verify.pop(partition, None)
            return
        if (end is not None and offset >= end) or self.taken >= self.limit:
            return
        if self.log_ends:
            self.log_ends.pop(partition, None)  # a message after an end of log event: the log went on
        into = self.per_partition[partition]
        into.offsets.append(offset)
        into.keys.append(message.key())
        into.values.append(message.value())
        into.timestamps.append(message.timestamp()[1])
        if self.keep_headed and len(into.headed) < self.keep_headed and (headers := message.headers()):
            pairs = list(headers.items()) if isinstance(headers, dict) else headers
            into.headed.append(HeadedMessage(partition, offset, pairs, message.value()))
        self.position[partition] = offset + 1
        self.taken += 1

    def messages(self) -> RawMessages:
        """Everything read, in (partition, offset) order."""
        messages = RawMessages(self.topic)
        for partition, read in sorted(self.per_partition.items()):
            messages.partitions.extend([partition] * len(read))
            messages.offsets.extend(read.offsets)
            messages.keys.extend(read.keys)
            messages.values.extend(read.values)
            messages.timestamps.extend(read.timestamps)
            messages.headed.extend(read.headed)
        return messages


def _timestamp_at(consumer: Consumer, topic: str, partition: int, offset: int) -> tuple[int, int]:
    """(offset, timestamp in ms) of the first message at or after ``offset`` (the broker may answer with
    the record batch around it)."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + STALL_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise TransientError(f"reading {topic}[{partition}] at {offset} failed: {error}")
                if message.partition() == partition and _offset(message) >= offset:
                    return _offset(message), message.timestamp()[1]
    finally:
        consumer.unassign()
    raise TransientError(f"no message of {topic}[{partition}] at offset {offset} within {STALL_TIMEOUT_S:.0f}s")


def first_offset_at(consumer: Consumer, topic: str, partition: int, timestamp_ms: int, log: LogBounds) -> int:
    """The first offset of the partition whose message timestamp is at or after ``timestamp_ms`` (``log.end``
    if none), by binary search over ``log``: about log2(n) single-message reads.

    Kafka's ``offsets_for_times`` does this from the broker's time index; the embedded broker answers it
    with offset 0 for any time, so the platform searches itself. Assumes timestamps that do not go back
    within a partition (producer create time from one clock), as Kafka's time index does.
    """
    low, high = log.start, log.end
    while low < high:
        middle = (low + high) // 2
        offset, timestamp = _timestamp_at(consumer, topic, partition, middle)
        if timestamp >= timestamp_ms:
            high = middle
        else:
            low = offset + 1
    return low
