"""Re-reading a range of a topic from Kafka: land what never landed, recognise what did.

Ingestion lands each offset once and moves on, so a message can only be missing from the lake if its
offsets were skipped (``offsets reset`` past a region, a range moved aside by hand). A re-read takes
an offset range per partition (or the offsets a time range of message timestamps spans), reads it in
micro-batches and, per message:

- already in the raw table (same partition and offset) or in ``raw.dead_letter``: counted, not touched;
- otherwise decoded and gated like any batch: rows land, failures become dead letters, duplicates of
  landed event_ids are rejected by the gate as in normal ingestion.

The stored offsets never move (a re-read snapshot records no offsets), and offsets at or past them are
left to normal ingestion. Running the same re-read again finds its rows by their offsets and lands
nothing: it is idempotent without a ledger.
"""

from __future__ import annotations

import dataclasses
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, In, LessThan, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.table import Table

from analytics_platform.contracts.envelope import event_type_for_topic
from analytics_platform.exceptions import ConcurrentIngestError, InvalidRequestError
from analytics_platform.ingest.decode import DecodedBatch, decode_batch
from analytics_platform.ingest.dedup import DedupWindow, RecentEventIds
from analytics_platform.ingest.land import gate_context
from analytics_platform.ingest.plan import BatchPlan, micro_batches
from analytics_platform.kafka.reader import (
    LogBounds,
    RawMessages,
    first_offset_at,
    make_consumer,
    probe_log_bounds,
    read_range,
)
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import StoredOffsets, stored_offsets
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, RUN_ID_KEY
from analytics_platform.lakehouse.tables import contract_for, ensure_dead_letter_table, ensure_raw_table
from analytics_platform.settings import Settings

REREAD_ID_KEY = "kafka.reread-id"
Ranges = dict[int, tuple[int, int]]


@dataclass
class RereadResult:
    """What a re-read did; every offset of ``ranges`` is counted in exactly one of the counts."""

    topic: str
    ranges: Ranges
    already_landed: int = 0
    already_dead_lettered: int = 0
    landed: int = 0
    dead_lettered: int = 0
    left_to_ingestion: int = 0
    """Offsets at or past the stored offsets: normal ingestion lands them."""
    snapshot_ids: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "offsets": sum(end - start for start, end in self.ranges.values()),
            "already_landed": self.already_landed,
            "already_dead_lettered": self.already_dead_lettered,
            "landed": self.landed,
            "dead_lettered": self.dead_lettered,
            "left_to_ingestion": self.left_to_ingestion,
        }


def offsets_for_times(
    settings: Settings, topic: str, start: datetime, end: datetime, partitions: list[int] | None = None
) -> Ranges:
    """Per partition, the offsets whose message timestamps fall in ``[start, end)``."""
    with closing(make_consumer(settings)) as consumer:
        bounds = probe_log_bounds(consumer, topic)
        chosen = sorted(bounds) if partitions is None else partitions
        ranges = {}
        for partition in chosen:
            log = _bounds_of(topic, bounds, partition)
            first = first_offset_at(consumer, topic, partition, int(start.timestamp() * 1000), log)
            last = first_offset_at(consumer, topic, partition, int(end.timestamp() * 1000), log)
            ranges[partition] = (first, last)
    return ranges


def _bounds_of(topic: str, bounds: dict[int, LogBounds], partition: int) -> LogBounds:
    if partition not in bounds:
        raise InvalidRequestError(f"{topic} has no partition {partition}; it has {sorted(bounds)}")
    return bounds[partition]


def check_ranges(topic: str, ranges: Ranges, bounds: dict[int, LogBounds]) -> None:
    """Refuse ranges the log does not hold, with what it does hold."""
    for partition, (start, end) in sorted(ranges.items()):
        log = _bounds_of(topic, bounds, partition)
        if start < log.start or end > log.end or start > end:
            raise InvalidRequestError(
                f"{topic}[{partition}] holds offsets {log.start}..{log.end - 1}; the range {start}..{end - 1} "
                "is not within it (retention deleted older messages, or the range is reversed)"
            )


def _handled(table: Table, dead_letters: Table, topic: str, batch: BatchPlan) -> tuple[set[tuple[int, int]], set]:
    """(partition, offset) of the batch's messages already landed, and of those already dead-lettered."""

    def coordinates(source: Table, with_topic: bool) -> set[tuple[int, int]]:
        found: set[tuple[int, int]] = set()
        for partition, (start, end) in batch.ranges.items():
            condition = And(
                EqualTo(term=Reference("kafka_partition"), value=literal(partition)),
                GreaterThanOrEqual(term=Reference("kafka_offset"), value=literal(start)),
                LessThan(term=Reference("kafka_offset"), value=literal(end)),
            )
            if with_topic:
                condition = And(EqualTo(term=Reference("kafka_topic"), value=literal(topic)), condition)
            rows = source.scan(row_filter=condition, selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
            found.update(zip(rows["kafka_partition"].to_pylist(), rows["kafka_offset"].to_pylist(), strict=True))
        return found

    return coordinates(table, False), coordinates(dead_letters, True)


def _landed_event_ids(table: Table, event_ids: pa.ChunkedArray) -> pa.ChunkedArray:
    """Which of ``event_ids`` the table already holds: an old range lies outside the dedup window, and
    its events may have landed through other offsets (a producer's re-send)."""
    landed = table.scan(
        row_filter=In(term=Reference("event_id"), values={literal(i) for i in event_ids.to_pylist()}),
        selected_fields=("event_id",),
    )
    return landed.to_arrow()["event_id"]


def reread(
    settings: Settings,
    topic: str,
    ranges: Ranges,
    *,
    reread_id: str,
    run_id: str | None = None,
    catalog: Catalog | None = None,
) -> RereadResult:
    """Re-read ``ranges`` of ``topic`` (``[start, end)`` per partition); see the module docstring.

    Raises:
        InvalidRequestError: the log does not hold the range.
        ConcurrentIngestError: an ingest run committed to the table meanwhile; run it again (idempotent).
    """
    catalog = catalog or load_catalog(settings)
    event_type = event_type_for_topic(topic)
    table = ensure_raw_table(catalog, settings, event_type)
    dead_letters = ensure_dead_letter_table(catalog, settings)
    with closing(make_consumer(settings)) as consumer:
        check_ranges(topic, ranges, probe_log_bounds(consumer, topic))
    stored = stored_offsets(table, topic)
    result = RereadResult(topic, ranges)
    clipped: Ranges = {}
    for partition, (start, end) in ranges.items():
        limit = max(min(end, stored.next_offset(partition)), start)
        result.left_to_ingestion += end - limit
        if limit > start:
            clipped[partition] = (start, limit)
    if not clipped:
        return result
    window = DedupWindow.read(table, settings.dedup_window_events)
    with closing(make_consumer(settings)) as consumer:
        for batch in micro_batches(BatchPlan(topic, clipped), StoredOffsets(topic), settings.batch_max_events):
            messages = read_range(consumer, topic, batch.ranges, StoredOffsets(topic))
            landed, dead = _handled(table, dead_letters, topic, batch)
            coordinates = list(zip(messages.partitions, messages.offsets, strict=True))
            result.already_landed += sum(c in landed for c in coordinates)
            result.already_dead_lettered += sum(c in dead and c not in landed for c in coordinates)
            keep = [c not in landed and c not in dead for c in coordinates]
            todo = RawMessages(
                topic,
                [p for p, wanted in zip(messages.partitions, keep, strict=True) if wanted],
                [o for o, wanted in zip(messages.offsets, keep, strict=True) if wanted],
                [k for k, wanted in zip(messages.keys, keep, strict=True) if wanted],
                [v for v, wanted in zip(messages.values, keep, strict=True) if wanted],
            )
            if not len(todo):
                continue
            snapshot_id = _land(settings, table, dead_letters, todo, window, reread_id, run_id, result)
            if snapshot_id is not None:
                result.snapshot_ids.append(snapshot_id)
    return result


def _land(
    settings: Settings,
    table: Table,
    dead_letters: Table,
    messages: RawMessages,
    window: DedupWindow,
    reread_id: str,
    run_id: str | None,
    result: RereadResult,
) -> int | None:
    event_type = event_type_for_topic(messages.topic)
    now = datetime.now(UTC)

    def decode(recent: RecentEventIds) -> DecodedBatch:
        context = dataclasses.replace(gate_context(settings, messages.topic, now, window), recent_event_ids=recent)
        return decode_batch(
            contract_for(settings, event_type),
            messages,
            now,
            table.schema().as_arrow(),
            context,
            max_event_bytes=settings.max_event_bytes,
        )

    decoded = decode(window.event_ids)
    if decoded.rows.num_rows and len(landed := _landed_event_ids(table, decoded.rows.column("event_id"))):
        decoded = decode(window.event_ids.extended(landed, len(window.event_ids) + len(landed)))
    properties = {REREAD_ID_KEY: reread_id, INGESTED_AT_KEY: now.isoformat()}
    if run_id is not None:
        properties[RUN_ID_KEY] = run_id
    try:
        if decoded.dead_letters.num_rows:
            dead_letters.append(
                decoded.dead_letters.cast(dead_letters.schema().as_arrow()), snapshot_properties=properties
            )
        if decoded.rows.num_rows:
            table.append(decoded.rows, snapshot_properties=properties)
    except CommitFailedException as error:
        raise ConcurrentIngestError(
            f"{table.name()} moved during the re-read ({error}); run it again: what landed is recognised"
        ) from error
    result.landed += decoded.rows.num_rows
    result.dead_lettered += decoded.dead_letters.num_rows
    window.extend(decoded.rows.column("event_id"))
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot is not None and decoded.rows.num_rows else None
