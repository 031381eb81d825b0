"""Landing micro-batches: the one code path of sensors, runs and ``analytics-platform ingest``.

:func:`land_batch` reads exactly a planned range (:mod:`analytics_platform.ingest.plan`), decodes and
gates it, and appends it to Iceberg with the new offsets in the same snapshot. A run that crashes
before its commit leaves the offsets untouched, so its retry lands the same range; two writers of the
same range cannot both succeed, because the append asserts that the table has not moved since the
offsets were read, and appends again on top of a writer that moved it only if that writer left this
batch's partitions' offsets at its start (maintenance, another partition group:
:mod:`analytics_platform.lakehouse.ingest_commit`). :func:`land_run` lands a run's range as consecutive
micro-batches and then, if asked, follows the topic (or its partition group).

With tracing on, each micro-batch is a span linked to the producer spans of (up to MAX_LINKS of) the
messages it lands, and its snapshot records the span's ``traceparent`` for the marts builds to link to.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
from confluent_kafka import Consumer
from opentelemetry.trace import Span, SpanKind
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from analytics_platform.contracts.envelope import event_type_for_topic
from analytics_platform.exceptions import ConcurrentIngestError
from analytics_platform.ingest.decode import decode_batch
from analytics_platform.ingest.dedup import DedupWindow
from analytics_platform.ingest.gate import GateContext
from analytics_platform.ingest.plan import (
    WHOLE_TOPIC,
    BatchPlan,
    PartitionGroup,
    micro_batches,
    plan_next_batch,
    plan_next_run,
)
from analytics_platform.kafka.reader import (
    RawMessages,
    ReadToEnd,
    check_stored_offsets,
    make_consumer,
    probe_log_bounds,
    read_range,
    read_to_end,
    topic_partitions,
)
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.ingest_commit import BatchOffsets, append_batch
from analytics_platform.lakehouse.lineage import record_before_expiry
from analytics_platform.lakehouse.offsets import StoredOffsets, fingerprint, stored_offsets
from analytics_platform.lakehouse.snapshots import (
    BATCH_ID_KEY,
    INGESTED_AT_KEY,
    KEY_NOT_USER_ID_KEY,
    RUN_ID_KEY,
    TRACEPARENT_KEY,
    UNKNOWN_FIELDS_KEY,
    expire_old_snapshots,
)
from analytics_platform.lakehouse.tables import contract_for, ensure_dead_letter_table, ensure_raw_table
from analytics_platform.operations import tracing
from analytics_platform.operations.batches import newest_event_at, summary_properties, timestamps_summary
from analytics_platform.settings import Settings


@dataclass(frozen=True)
class BatchResult:
    plan: BatchPlan
    rows_landed: int
    dead_lettered: int
    snapshot_id: int | None
    next_offsets: dict[int, int] = field(default_factory=dict)
    already_landed: bool = False
    unknown_fields: list[str] = field(default_factory=list)
    keys_not_user_id: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: ``consume``, ``decode`` (with the gate) and ``commit`` (shown as run metadata), and
    ``commit_cpu``, the CPU seconds of the commit."""
    timestamps: dict[str, int] | None = None
    """The messages' Kafka timestamps (:func:`analytics_platform.operations.batches.timestamps_summary`)."""
    committed_ms: int | None = None
    """Commit time of its snapshot (ms since the epoch): with ``timestamps``, its processing latency."""
    data_files: int | None = None
    """Data files in the table after it (its snapshot's ``total-data-files``)."""
    commit_attempts: int = 1
    """Appends it took: more than 1 when it lost to maintenance or another partition group and went on top."""
    log_ends: dict[int, int] | None = None
    """The log end of each partition whose end the read reached (a following run's poll, :func:`read_to_end`):
    the lag after the batch, without asking the broker again."""


def gate_context(settings: Settings, topic: str, now: datetime, dedup: DedupWindow) -> GateContext:
    return GateContext(
        topic=topic,
        now=now,
        earliest=settings.earliest_event_at,
        max_future=timedelta(seconds=settings.max_event_future_s),
        recent_event_ids=dedup.event_ids,
    )


def _dead_letters_landed(table: Table, batch_id: str) -> bool:
    return any(
        snapshot.summary is not None and snapshot.summary.additional_properties.get(BATCH_ID_KEY) == batch_id
        for snapshot in table.snapshots()
    )


class _Correlated(msgspec.Struct):
    correlation_id: str | None = None


_CORRELATED = msgspec.json.Decoder(_Correlated)


def _correlation_id(value: bytes | None) -> str | None:
    try:
        return _CORRELATED.decode(value).correlation_id if value else None
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None  # a message that cannot land: its link says where it is, without a correlation id


def _link_messages(span: Span, messages: RawMessages) -> None:
    """Link the batch's span to the producer spans of up to MAX_LINKS of its messages, spread over its
    partitions, with each message's offset and correlation id (also listed on the span)."""
    headed = messages.headed
    correlation_ids: dict[str, None] = {}
    for message in headed[:: max(1, -(-len(headed) // tracing.MAX_LINKS))]:
        attributes: dict[str, str | int] = {
            tracing.MESSAGING_PARTITION: str(message.partition),
            tracing.MESSAGING_OFFSET: message.offset,
        }
        if (correlation_id := _correlation_id(message.value)) is not None:
            attributes[tracing.CORRELATION_ID] = correlation_id
        if (link := tracing.message_link(message.headers, attributes)) is not None:
            span.add_link(link.context, link.attributes)
            if correlation_id is not None:
                correlation_ids[correlation_id] = None
    if correlation_ids:
        span.set_attribute(tracing.CORRELATION_ID, list(correlation_ids))


def _batch_attributes(plan: BatchPlan, run_id: str | None) -> dict[str, str | int | list[int]]:
    partitions = sorted(plan.ranges)
    attributes: dict[str, str | int | list[int]] = {
        tracing.MESSAGING_SYSTEM: "kafka",
        tracing.MESSAGING_DESTINATION: plan.topic,
        tracing.MESSAGING_OPERATION_TYPE: "process",
        tracing.MESSAGING_OPERATION_NAME: "land",
        tracing.MESSAGING_BATCH_COUNT: plan.size,
        tracing.BATCH_ID: plan.run_key,
        "analytics_platform.kafka.partitions": partitions,
        "analytics_platform.kafka.start_offsets": [plan.ranges[p][0] for p in partitions],
        "analytics_platform.kafka.end_offsets": [plan.ranges[p][1] for p in partitions],
    }
    if run_id is not None:
        attributes[tracing.DAGSTER_RUN_ID] = run_id
    return attributes


def _record_result(span: Span, result: BatchResult) -> None:
    span.set_attribute("analytics_platform.rows_landed", result.rows_landed)
    span.set_attribute("analytics_platform.dead_letters", result.dead_lettered)
    span.set_attribute("analytics_platform.already_landed", result.already_landed)
    if result.snapshot_id is not None:
        span.set_attribute("analytics_platform.snapshot_id", str(result.snapshot_id))
    for stage, seconds in result.seconds.items():
        span.set_attribute(f"analytics_platform.seconds.{stage}", seconds)


def _keep_headed() -> int:
    """How many messages' headers a read keeps per partition: their trace contexts, if tracing is on."""
    return tracing.MAX_LINKS if tracing.enabled() else 0


def land_batch(
    settings: Settings,
    plan: BatchPlan,
    *,
    catalog: Catalog | None = None,
    consumer: Consumer | None = None,
    dedup: DedupWindow | None = None,
    read: Callable[[], RawMessages] | None = None,
    before_commit: Callable[[], None] | None = None,
    after_dead_letters: Callable[[], None] | None = None,
    run_id: str | None = None,
) -> BatchResult:
    """Read ``plan``'s range, decode it and commit rows + offsets in one Iceberg snapshot.

    A run landing several batches passes its ``consumer`` and ``dedup`` window along, and ``read``,
    which returns the range's messages read ahead (see :func:`land_run`); by default the batch opens
    its own consumer and reads the window from the table.
    ``before_commit`` runs after the batch is read and decoded and before anything is written;
    ``after_dead_letters`` between the dead-letter and the raw commit (tests inject crashes and
    competing writers there). ``run_id``, the Dagster run landing it, is recorded in the snapshot.

    Raises:
        ConcurrentIngestError: another writer moved the table's offsets; re-plan and retry.
        OffsetMismatchError: the Kafka log no longer holds what Iceberg says was landed.
    """
    tracing.setup(settings)
    name = f"land {plan.topic}"
    with tracing.span(name, kind=SpanKind.CONSUMER, attributes=_batch_attributes(plan, run_id)) as span:
        result = _land_batch(
            settings, plan, catalog, consumer, dedup, read, before_commit, after_dead_letters, run_id, span
        )
        _record_result(span, result)
    return result


def _land_batch(
    settings: Settings,
    plan: BatchPlan,
    catalog: Catalog | None,
    consumer: Consumer | None,
    dedup: DedupWindow | None,
    read: Callable[[], RawMessages] | None,
    before_commit: Callable[[], None] | None,
    after_dead_letters: Callable[[], None] | None,
    run_id: str | None,
    span: Span,
) -> BatchResult:
    catalog = catalog or load_catalog(settings)
    event_type = event_type_for_topic(plan.topic)
    table = ensure_raw_table(catalog, settings, event_type)
    stored = stored_offsets(table, plan.topic)
    starts = {p: start for p, (start, _) in plan.ranges.items()}
    ends = {p: end for p, (_, end) in plan.ranges.items()}
    if all(stored.next_offset(p) == end for p, end in ends.items()):
        return BatchResult(plan, 0, 0, stored.snapshot_id, dict(stored.next_offsets), already_landed=True)
    moved = {p: stored.next_offset(p) for p, start in starts.items() if stored.next_offset(p) != start}
    if moved:
        raise ConcurrentIngestError(
            f"{plan.topic}: the stored offsets {moved} no longer match this batch's "
            f"start {starts}; another writer landed data first. Re-plan the batch."
        )

    clock = time.perf_counter()
    if read is not None:
        messages = read()
    elif consumer is None:
        with closing(make_consumer(settings)) as own_consumer:
            messages = read_range(own_consumer, plan.topic, plan.ranges, stored, _keep_headed())
    else:
        messages = read_range(consumer, plan.topic, plan.ranges, stored, _keep_headed())
    seconds = {"consume": time.perf_counter() - clock}
    if span.is_recording():
        _link_messages(span, messages)
    clock = time.perf_counter()
    now = datetime.now(UTC)
    dedup = dedup or DedupWindow.read(table, settings.dedup_window_events)
    decoded = decode_batch(
        contract_for(settings, event_type),
        messages,
        now,
        table.schema().as_arrow(),
        gate_context(settings, plan.topic, now, dedup),
        max_event_bytes=settings.max_event_bytes,
    )
    seconds["decode"] = time.perf_counter() - clock
    last_value = {p: v for p, v in zip(messages.partitions, messages.values, strict=True)}
    offsets = BatchOffsets(plan.topic, starts, ends, {p: fingerprint(v) for p, v in last_value.items()})
    if before_commit is not None:
        before_commit()

    clock, cpu = time.perf_counter(), time.process_time()
    # Dead letters first: if the run dies between the two commits, the retry finds them by batch id
    # and only lands the rows; the other order could advance the offsets and lose the dead letters.
    if decoded.dead_letters.num_rows:
        dead_letters = ensure_dead_letter_table(catalog, settings)
        if not _dead_letters_landed(dead_letters, plan.run_key):
            try:
                dead_letters.append(
                    decoded.dead_letters.cast(dead_letters.schema().as_arrow()),
                    snapshot_properties={BATCH_ID_KEY: plan.run_key},
                )
            except CommitFailedException as error:
                raise ConcurrentIngestError(f"raw.dead_letter changed during the commit: {error}") from error
    if after_dead_letters is not None:
        after_dead_letters()
    properties = {INGESTED_AT_KEY: now.isoformat()}
    if run_id is not None:
        properties[RUN_ID_KEY] = run_id
    if (parent := tracing.traceparent(span)) is not None:
        properties[TRACEPARENT_KEY] = parent  # what the marts builds that read this snapshot link to
    if decoded.unknown_fields:
        properties[UNKNOWN_FIELDS_KEY] = json.dumps(decoded.unknown_fields)
    if decoded.keys_not_user_id:
        properties[KEY_NOT_USER_ID_KEY] = str(decoded.keys_not_user_id)
    # For the processing latency and raw freshness figures (analytics_platform.operations).
    timestamps = timestamps_summary(messages.timestamps) if len(messages.timestamps) == len(messages) else None
    properties |= summary_properties(timestamps, newest_event_at(decoded.rows))
    # On top of a maintenance commit or another partition group's batch made meanwhile, never of a
    # writer of this batch's partitions (ConcurrentIngestError).
    committed = append_batch(table, decoded.rows, offsets, stored, properties)
    seconds["commit"] = time.perf_counter() - clock
    # The process's CPU time meanwhile (pyiceberg writes the Parquet file in its thread pool): what the commit
    # costs, where the clock also counts waiting for a core on a busy machine. While a run lands a backlog it
    # also counts the read-ahead of the next batch; a following run's polls read nothing meanwhile.
    seconds["commit_cpu"] = time.process_time() - cpu
    expire_old_snapshots(
        table, settings.raw_snapshots_kept, lambda expiring: record_before_expiry(catalog, settings, table, expiring)
    )
    dedup.extend(decoded.rows.column("event_id"))
    snapshot = table.current_snapshot()
    return BatchResult(
        plan,
        decoded.rows.num_rows,
        decoded.dead_letters.num_rows,
        snapshot.snapshot_id if snapshot else None,
        committed.next_offsets,
        unknown_fields=decoded.unknown_fields,
        keys_not_user_id=decoded.keys_not_user_id,
        seconds={stage: round(value, 3) for stage, value in seconds.items()},
        timestamps=timestamps,
        committed_ms=snapshot.timestamp_ms if snapshot else None,
        data_files=int(snapshot.summary.get("total-data-files") or 0) if snapshot and snapshot.summary else None,
        commit_attempts=committed.attempts,
    )


def _read_ahead(
    consumer: Consumer, slices: list[BatchPlan], stored: StoredOffsets
) -> Generator[RawMessages, None, None]:
    """Each slice's messages in turn; taking one starts reading the next in a thread, which runs while
    the caller decodes and commits (Kafka reads are mostly Python per message, decoding and Iceberg
    writes mostly native code: on 2 cores they overlap). Two slices are in memory at most."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-read-ahead") as reader:
        # Only the first slice continues a previous run's batch, so only it checks the fingerprint.
        keep = _keep_headed()
        future = reader.submit(read_range, consumer, slices[0].topic, slices[0].ranges, stored, keep)
        for upcoming in slices[1:]:
            messages = future.result()
            future = reader.submit(
                read_range, consumer, upcoming.topic, upcoming.ranges, StoredOffsets(upcoming.topic), keep
            )
            yield messages
        yield future.result()


def land_run(
    settings: Settings,
    plan: BatchPlan,
    *,
    catalog: Catalog | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    follow_s: float = 0.0,
    run_id: str | None = None,
    group: PartitionGroup = WHOLE_TOPIC,
) -> list[BatchResult]:
    """Land a run's range as consecutive micro-batches of at most ``batch_max_events`` each.

    Each micro-batch is its own snapshot with its offsets, so memory is bounded by the batch size,
    not the run's range, and a retried run continues after the last batch it committed. One consumer
    and one dedup window serve all the batches. Returns nothing if the range had already landed.

    With ``follow_s``, the run then keeps landing what arrives, every ``ingest_poll_s``, for that
    long: a steady stream is landed within seconds instead of paying a run launch per micro-batch.
    The next run starts where the stored offsets then stand, so following never lands twice. A run of
    a partition ``group`` follows only that group's partitions (its range is planned from them too).
    """
    tracing.setup(settings)  # before the first read-ahead, which keeps trace headers if tracing is on
    catalog = catalog or load_catalog(settings)
    table = ensure_raw_table(catalog, settings, event_type_for_topic(plan.topic))
    results: list[BatchResult] = []
    dedup = None

    def land(batch: BatchPlan, read: Callable[[], RawMessages] | None = None, found: ReadToEnd | None = None) -> None:
        nonlocal dedup
        dedup = dedup or DedupWindow.read(table, settings.dedup_window_events)
        if found is not None:
            read = lambda: found.messages  # noqa: E731
        result = land_batch(settings, batch, catalog=catalog, consumer=consumer, dedup=dedup, read=read, run_id=run_id)
        if found is not None:
            result = dataclasses.replace(result, log_ends=found.log_ends)
        results.append(result)
        if on_batch:
            on_batch(result)

    with closing(make_consumer(settings)) as consumer:
        stored = stored_offsets(table, plan.topic)
        slices = micro_batches(plan, stored, settings.batch_max_events)
        if slices:
            # Closed before the consumer is: a read still in flight finishes first.
            with closing(_read_ahead(consumer, slices, stored)) as reads:
                for batch in slices:
                    land(batch, lambda: next(reads))
        deadline = time.monotonic() + follow_s
        while time.monotonic() < deadline:
            time.sleep(min(settings.ingest_poll_s, max(deadline - time.monotonic(), 0)))
            if arrived := _arrived(settings, catalog, table, consumer, plan.topic, group):
                batch, found = arrived
                land(batch, found=found)
    return results


def _arrived(
    settings: Settings, catalog: Catalog, table: Table, consumer: Consumer, topic: str, group: PartitionGroup
) -> tuple[BatchPlan, ReadToEnd | None] | None:
    """What a following run lands next, and the read that found it: from the stored offsets to the end of
    the log in one pass (:func:`read_to_end`, one fetch per partition where planning first took two). A
    partition never landed starts at the log's first offset, so that poll plans from the log's bounds; a
    partition that stays silent is checked against them (a log shorter than the stored offsets stops here)."""
    table.refresh()
    stored = stored_offsets(table, topic)
    partitions = [p for p in topic_partitions(consumer, topic) if group.owns(p)]
    if any(p not in stored.next_offsets for p in partitions):
        planned = plan_next_batch(settings, topic, catalog=catalog, consumer=consumer, group=group)
        return None if planned is None else (planned, None)
    starts = {p: stored.next_offsets[p] for p in partitions}
    read = read_to_end(consumer, topic, starts, stored, settings.batch_max_events, _keep_headed())
    if read.silent:
        check_stored_offsets(stored, probe_log_bounds(consumer, topic, group.owns), group.owns)
    last = dict(zip(read.messages.partitions, read.messages.offsets, strict=True))
    if not last:
        return None
    return BatchPlan(topic, {p: (starts[p], offset + 1) for p, offset in last.items()}), read


def ingest_until_caught_up(
    settings: Settings,
    topic: str,
    *,
    catalog: Catalog | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> list[BatchResult]:
    """Plan and land runs until the topic has nothing new (what ``analytics-platform ingest`` does)."""
    catalog = catalog or load_catalog(settings)
    results: list[BatchResult] = []
    while (plan := plan_next_run(settings, topic, catalog=catalog)) is not None:
        results.extend(land_run(settings, plan, catalog=catalog, on_batch=on_batch))
    return results
