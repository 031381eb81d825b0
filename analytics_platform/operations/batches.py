"""What each micro-batch records for operations, and the figures derived from it.

Every ingest snapshot records a summary of its messages' Kafka timestamps (:data:`TIMESTAMPS_KEY`) and the
newest event time of its rows (:data:`NEWEST_EVENT_KEY`). A message's processing latency is the snapshot's
commit time minus the message's Kafka timestamp, so a batch's latency quantiles are its commit time minus
the timestamps' quantiles: p95 latency = commit - the 5th percentile timestamp. The raw assets show these
per batch in Dagster; the exporter reads them back from the snapshots, since it never sees a batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer

from analytics_platform.exceptions import PlatformError
from analytics_platform.kafka.reader import LogBounds, make_consumer, probe_log_bounds
from analytics_platform.settings import Settings

TIMESTAMPS_KEY = "kafka.timestamps-ms"
NEWEST_EVENT_KEY = "ingest.newest-event-at"


def timestamps_summary(timestamps: Sequence[int]) -> dict[str, int] | None:
    """``min``, ``p05``, ``p50``, ``max`` (ms since the epoch) and ``count`` of a batch's Kafka timestamps;
    None if no message had one (the client reports -1 for a message without a timestamp)."""
    values = pa.array(timestamps, pa.int64())
    values = values.filter(pc.greater(values, 0))
    if len(values) == 0:
        return None
    p05, p50 = pc.quantile(values, q=[0.05, 0.5], interpolation="lower").to_pylist()
    bounds = pc.min_max(values)
    return {
        "min": bounds["min"].as_py(),
        "p05": int(p05),
        "p50": int(p50),
        "max": bounds["max"].as_py(),
        "count": len(values),
    }


def newest_event_at(rows: pa.Table) -> datetime | None:
    """The newest ``event_at`` of a batch's rows (None for a batch without rows)."""
    if rows.num_rows == 0:
        return None
    newest: datetime | None = pc.max(rows.column("event_at")).as_py()
    return newest


def summary_properties(timestamps: dict[str, int] | None, newest_event_at: datetime | None) -> dict[str, str]:
    """The snapshot summary properties of a batch (none for what it does not have, e.g. an empty batch)."""
    properties = {}
    if timestamps is not None:
        properties[TIMESTAMPS_KEY] = json.dumps(timestamps, sort_keys=True)
    if newest_event_at is not None:
        properties[NEWEST_EVENT_KEY] = newest_event_at.isoformat()
    return properties


def read_timestamps(properties: Mapping[str, str]) -> dict[str, int] | None:
    """The timestamps summary a snapshot recorded (None for a snapshot that recorded none)."""
    text = properties.get(TIMESTAMPS_KEY)
    return {key: int(value) for key, value in json.loads(text).items()} if text else None


def read_newest_event_at(properties: Mapping[str, str]) -> datetime | None:
    text = properties.get(NEWEST_EVENT_KEY)
    return datetime.fromisoformat(text) if text else None


def latency_seconds(timestamps: Mapping[str, int], committed_ms: int) -> dict[str, float]:
    """A batch's processing latency (Kafka timestamp -> Iceberg commit) in seconds: ``p50``, ``p95`` and ``max``
    (its oldest message). Never negative: a producer clock ahead of ours counts as no delay."""
    return {
        name: round(max(committed_ms - timestamps[quantile], 0) / 1000, 3)
        for name, quantile in (("p50", "p50"), ("p95", "p05"), ("max", "min"))
    }


def lag_messages(bounds: Mapping[int, LogBounds], next_offsets: Mapping[int, int]) -> int:
    """Messages in Kafka not landed yet: per partition, its log end minus the next offset to land (the log's
    first offset for a partition never landed, as ingestion plans it). A next offset past the end (the log
    was replaced: ingestion refuses to go on) counts as no lag here."""
    return sum(max(log.end - next_offsets.get(partition, log.start), 0) for partition, log in bounds.items())


class LandedBatch(Protocol):
    """What the figures need of a landed batch (``analytics_platform.ingest.land.BatchResult``)."""

    @property
    def timestamps(self) -> dict[str, int] | None: ...
    @property
    def committed_ms(self) -> int | None: ...
    @property
    def data_files(self) -> int | None: ...
    @property
    def seconds(self) -> dict[str, float]: ...


def batch_figures(batch: LandedBatch, lag: int | None) -> dict[str, Any]:
    """The numbers Dagster plots on a raw asset's page for one micro-batch (what it has of them): the lag
    after it, its processing latency (p95 and its oldest message's), its commit seconds, the table's data files."""
    figures: dict[str, Any] = {}
    if lag is not None:
        figures["lag_messages"] = lag
    if batch.timestamps is not None and batch.committed_ms is not None:
        latency = latency_seconds(batch.timestamps, batch.committed_ms)
        figures["processing_latency_p95_s"] = latency["p95"]
        figures["processing_latency_max_s"] = latency["max"]
    if "commit" in batch.seconds:
        figures["commit_seconds"] = batch.seconds["commit"]
    if batch.data_files is not None:
        figures["data_files"] = batch.data_files
    return figures


def run_figures(batches: Sequence[LandedBatch], lag: int | None, *, followed: bool) -> dict[str, Any]:
    """The numbers of a run's final materialization: the lag and data files after it and, for a run that did
    not follow (so its batches were not shown one by one), its slowest batch's latency and commit, and every
    batch's commit seconds (``commit_seconds_batches``, which the exporter's histogram reads)."""
    figures: dict[str, Any] = {} if lag is None else {"lag_messages": lag}
    if batches and batches[-1].data_files is not None:
        figures["data_files"] = batches[-1].data_files
    if followed or not batches:
        return figures
    each = [batch_figures(batch, None) for batch in batches]
    for name in ("processing_latency_p95_s", "processing_latency_max_s", "commit_seconds"):
        if values := [figure[name] for figure in each if name in figure]:
            figures[name] = max(values)
    figures["commit_seconds_batches"] = [figure["commit_seconds"] for figure in each if "commit_seconds" in figure]
    return figures


class LagProbe:
    """The lag of one topic after each batch, with one consumer for a whole run (metadata only).

    A probe that fails answers None: the batch has landed either way, and failing the run over a figure
    would stop ingestion. Use as a context manager (the consumer is closed on exit)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._consumer: Consumer | None = None
        self.error: str | None = None

    def __enter__(self) -> LagProbe:
        self._consumer = make_consumer(self._settings)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def lag(self, next_offsets: Mapping[int, int], log_ends: Mapping[int, int] | None = None) -> int | None:
        """Messages of the topic not landed, now (None if the broker did not answer; see ``error``).

        ``log_ends``: each partition's end as the batch's read found it; when it covers every partition of
        ``next_offsets``, the lag is computed from it and the broker is not asked (each probe is a fetch)."""
        if log_ends is not None and next_offsets and set(log_ends) >= set(next_offsets):
            return sum(max(log_ends[p] - offset, 0) for p, offset in next_offsets.items())
        if self._consumer is None:
            raise RuntimeError("LagProbe.lag() outside its `with` block")
        try:
            bounds = probe_log_bounds(self._consumer, self._topic)
        except PlatformError as error:
            self.error = str(error)
            return None
        return lag_messages(bounds, next_offsets)
