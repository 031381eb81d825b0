"""The platform's figures for Prometheus, read on scrape from Kafka, Iceberg, the published marts, dbt's run
results and Dagster's storage (:class:`PlatformCollector`).

Nothing here runs inside the pipeline: the collector reads what the pipeline leaves behind (log ends, the
offsets and summaries in raw snapshots, the published build's pins, run records), so the exporter can run
anywhere those are reachable and a scrape never slows ingestion down. Reading all of it costs ~0.1 s, so a
scrape within ``cache_s`` of the last one gets the same figures.

Counters and histograms need history that no single source keeps (raw snapshots are expired within
minutes), so the collector keeps them in its process: seeded on first sight from what is still there (the
rows in each table, the kept snapshots, the last materializations) and then advanced by each new snapshot
or event. A restart of the exporter is a counter reset, which Prometheus's ``rate()`` handles.

A source that fails (the broker down, say) drops its figures from the scrape and sets
``analytics_platform_source_up{source}`` to 0; the others are still reported.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaException
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pyiceberg.catalog import Catalog
from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import DataFile, ManifestContent, ManifestEntryStatus
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of
from pyiceberg.types import TimestamptzType

from analytics_platform.contracts.envelope import EventType, event_types
from analytics_platform.exceptions import BrokerUnavailableError, NotPublishedError, TableNotFoundError
from analytics_platform.kafka.reader import _timestamp_at as message_timestamp  # one message's (offset, time)
from analytics_platform.kafka.reader import make_consumer, probe_log_bounds
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import StoredOffsets, stored_offsets
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, open_table
from analytics_platform.operations.batches import read_newest_event_at, read_timestamps
from analytics_platform.settings import Settings

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from analytics_platform.serving.published import PublishedBuilds

log = logging.getLogger(__name__)

PREFIX = "analytics_platform"
# Seconds from a message's Kafka timestamp to the commit of its batch: the promise is ~20 s (README).
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Seconds of one raw commit (a healthy one is well under a second; it crept to 0.7 s before the fix).
COMMIT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
SOURCES = ("kafka", "iceberg", "marts", "dbt", "dagster")
# Counting data files reads every manifest of the current snapshot: often enough for a figure that moves
# with commits and compactions, not on every scrape.
DATA_FILES_EVERY_S = 60.0
KAFKA_TIMEOUT_S = 3.0
# The materializations a fresh collector seeds the commit histogram with, per raw asset.
COMMIT_SEED_RECORDS = 500
# Failed runs are found by update time; runs updated this long before the newest seen are read again
# (their ids dedup them), in case records arrive out of order.
RUNS_OVERLAP = timedelta(minutes=10)


@dataclass
class Histogram:
    """Bucket counts kept in the process (a custom collector cannot use prometheus_client's own metrics)."""

    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
        self.counts[index] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs, ``+Inf`` last, as prometheus_client's families take them."""
        pairs, running = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            pairs.append((bound, float(running)))
        return pairs


def _summary(snapshot: Snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}


def _count(snapshot: Snapshot, key: str) -> int:
    return int((snapshot.summary.get(key) if snapshot.summary is not None else None) or 0)


def _is_append(snapshot: Snapshot) -> bool:
    return snapshot.summary is not None and snapshot.summary.operation == Operation.APPEND


def _new_snapshots(table: Table, seen: int | None) -> tuple[list[Snapshot], bool]:
    """The current snapshot's ancestors committed after ``seen``, oldest first, and whether ``seen`` was
    reached (False: it was expired meanwhile, or the table was replaced)."""
    current = table.current_snapshot()
    if current is None:
        return [], True
    new: list[Snapshot] = []
    for snapshot in ancestors_of(current, table.metadata):
        if snapshot.snapshot_id == seen:
            return new[::-1], True
        new.append(snapshot)
    return new[::-1], seen is None


def _live_data_files(table: Table) -> Iterator[DataFile]:
    """The data files of the current snapshot, from its manifests (no data is read)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return
    for manifest in snapshot.manifests(table.io):
        if manifest.content == ManifestContent.DATA:
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                yield entry.data_file


def _added_data_files(table: Table, snapshot: Snapshot) -> list[DataFile]:
    """The data files ``snapshot`` added (its own manifests' ADDED entries)."""
    return [
        entry.data_file
        for manifest in snapshot.manifests(table.io)
        if manifest.added_snapshot_id == snapshot.snapshot_id and manifest.content == ManifestContent.DATA
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot.snapshot_id
    ]


@dataclass
class RawTable:
    """What the collector keeps about one raw table between scrapes."""

    event_type: EventType
    snapshot_id: int | None = None
    total_records: int = 0
    rows_landed: int = 0
    newest_event_at: datetime | None = None
    offsets: StoredOffsets | None = None
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    data_files: tuple[int, int, int] | None = None  # (files, partitions, most files in one partition)
    data_files_of: int | None = None  # the snapshot they were counted on
    data_files_at: float = 0.0

    def update(self, table: Table) -> None:
        """Advance by the snapshots committed since the last look (seed on the first)."""
        current = table.current_snapshot()
        if current is None or current.snapshot_id == self.snapshot_id:
            return
        new, reached = _new_snapshots(table, self.snapshot_id)
        rescan_newest = self.snapshot_id is None
        if self.snapshot_id is None:
            self.rows_landed = _count(current, "total-records")  # the rows there now; counted on from here
        elif not reached and new:
            # History was expired past the last look: count the rows of the gap from the running totals.
            before = _count(new[0], "total-records") - (_count(new[0], "added-records") if _is_append(new[0]) else 0)
            self.rows_landed += max(before - self.total_records, 0)
            rescan_newest = True
        for snapshot in new:
            properties = _summary(snapshot)
            if self.snapshot_id is not None and _is_append(snapshot):
                self.rows_landed += _count(snapshot, "added-records")
            if (timestamps := read_timestamps(properties)) is not None:
                self.latency.observe(max(snapshot.timestamp_ms - timestamps["min"], 0) / 1000)
            newest = read_newest_event_at(properties)
            if newest is not None:
                self.newest_event_at = max(self.newest_event_at or newest, newest)
            elif _is_append(snapshot) and _count(snapshot, "added-records"):
                rescan_newest = True  # rows landed by another path (a replay): read the files' bounds
        if rescan_newest:
            self.newest_event_at = _newest_event_at(table)
        self.snapshot_id, self.total_records = current.snapshot_id, _count(current, "total-records")
        self.offsets = stored_offsets(table, self.event_type.topic)

    def count_data_files(self, table: Table, now: float, every_s: float) -> None:
        """Data files in total, partitions, and the most files one day partition has (at most every ``every_s``)."""
        current = table.current_snapshot()
        if current is None or current.snapshot_id == self.data_files_of:
            return
        if self.data_files_of is not None and now - self.data_files_at < every_s:
            return
        per_partition: Counter[Any] = Counter(data_file.partition for data_file in _live_data_files(table))
        self.data_files = (sum(per_partition.values()), len(per_partition), max(per_partition.values(), default=0))
        self.data_files_of, self.data_files_at = current.snapshot_id, now


def _newest_event_at(table: Table) -> datetime | None:
    """The newest ``event_at`` of the table's rows, from the data files' upper bounds (no data is read)."""
    field_id = table.schema().find_field("event_at").field_id
    newest: int | None = None
    for data_file in _live_data_files(table):
        bound = (data_file.upper_bounds or {}).get(field_id)
        if bound is not None:
            micros = int(from_bytes(TimestamptzType(), bound))
            newest = max(newest or micros, micros)
    return datetime.fromtimestamp(newest / 1e6, UTC) if newest is not None else None


@dataclass
class DeadLetters:
    """Dead letters by topic and by failed check, advanced by the files each new snapshot added."""

    snapshot_id: int | None = None
    messages: Counter[str] = field(default_factory=Counter)
    checks: Counter[tuple[str, str]] = field(default_factory=Counter)

    def update(self, table: Table) -> None:
        current = table.current_snapshot()
        if current is None or current.snapshot_id == self.snapshot_id:
            return
        new, reached = _new_snapshots(table, self.snapshot_id)
        if self.snapshot_id is None or not reached:
            # Seed from the rows there now; after a gap, never count down (a counter only grows).
            messages, checks = self._tally([table.scan(selected_fields=("kafka_topic", "failed_checks")).to_arrow()])
            self.messages, self.checks = messages | self.messages, checks | self.checks  # | keeps the larger
        else:
            for snapshot in new:
                if _is_append(snapshot):
                    files = _added_data_files(table, snapshot)
                    tables = [
                        pq.read_table(table.io.new_input(f.file_path).open(), columns=["kafka_topic", "failed_checks"])
                        for f in files
                    ]
                    messages, checks = self._tally(tables)
                    self.messages.update(messages)
                    self.checks.update(checks)
        self.snapshot_id = current.snapshot_id

    @staticmethod
    def _tally(tables: Iterable[Any]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
        messages: Counter[str] = Counter()
        checks: Counter[tuple[str, str]] = Counter()
        for rows in tables:
            for topic, failed in zip(
                rows.column("kafka_topic").to_pylist(), rows.column("failed_checks").to_pylist(), strict=True
            ):
                messages[topic] += 1
                checks.update((topic, check) for check in failed or [])
        return messages, checks


@dataclass
class DagsterFigures:
    """Failed runs (by job, with the topic of ingest runs) and raw commit durations from Dagster's storage."""

    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_ids: set[str] = field(default_factory=set)
    runs_after: datetime | None = None
    seeded: bool = False
    commit: dict[str, Histogram] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)

    def update(self, instance: DagsterInstance) -> None:
        import dagster as dg

        from analytics_platform.defs.ingestion.jobs import TOPIC_TAG

        records = instance.get_run_records(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=self.runs_after)
        )
        for record in records:
            run = record.dagster_run
            if run.run_id not in self.failed_ids:
                self.failed_ids.add(run.run_id)
                self.failed[(run.job_name, run.tags.get(TOPIC_TAG, ""))] += 1
            updated = record.update_timestamp - RUNS_OVERLAP
            self.runs_after = max(self.runs_after or updated, updated)
        for event_type in event_types().values():
            self._commits(instance, event_type)
        self.seeded = True

    def _commits(self, instance: DagsterInstance, event_type: EventType) -> None:
        import dagster as dg

        histogram = self.commit.setdefault(event_type.topic, Histogram(COMMIT_BUCKETS))
        key = dg.AssetKey(["raw", event_type.name])
        cursor = self.cursors.get(event_type.topic)
        while True:
            if cursor is None:
                records = list(reversed(instance.fetch_materializations(key, limit=COMMIT_SEED_RECORDS).records))
            else:
                records = list(
                    instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor), limit=1000, ascending=True
                    ).records
                )
            for record in records:
                materialization = record.asset_materialization
                if materialization is not None:
                    for seconds in commit_seconds(
                        {name: value.value for name, value in materialization.metadata.items()}
                    ):
                        histogram.observe(seconds)
                cursor = max(cursor or record.storage_id, record.storage_id)
            if cursor is None:
                cursor = 0  # nothing materialized yet: the next look reads from the start
            self.cursors[event_type.topic] = cursor
            if len(records) < 1000:
                return


def commit_seconds(metadata: dict[str, Any]) -> list[float]:
    """The commit durations one raw materialization reports: a batch of a following run its own
    (``commit_seconds``), a run that did not follow each of its batches' (``commit_seconds_batches``); a
    following run's final materialization none (its batches were reported one by one)."""
    if "commit_seconds_batches" in metadata:
        return [float(seconds) for seconds in metadata["commit_seconds_batches"]]
    if "micro_batches" not in metadata and "commit_seconds" in metadata:
        return [float(metadata["commit_seconds"])]
    return []


def dbt_durations(settings: Settings) -> dict[str, float]:
    """Seconds of the last dbt command per target folder (``models``: the full build, ``daily``, ``live``,
    ``snapshots``), from dbt's own ``run_results.json``."""
    durations = {}
    for results in sorted((settings.duckdb_path / "dbt" / "targets").glob("*/run_results.json")):
        try:
            durations[results.parent.name] = float(json.loads(results.read_text())["elapsed_time"])
        except (OSError, ValueError, KeyError):  # being rewritten by dbt right now: the next scrape reads it
            continue
    return durations


def _labels(event_type: EventType) -> list[str]:
    return [event_type.topic, event_type.name]


def _event_type_of(topic: str) -> str:
    return topic.removeprefix("events.")


class PlatformCollector(Collector):
    """The platform's figures, for a prometheus_client registry: see docs/operations.md#metrics.

    ``builds``: the API's open published builds, to share (else the collector opens its own). ``clock``:
    seconds since the epoch (tests pass a fixed one so ages are exact). ``data_files_every_s``: how often the
    data files are counted (it reads every manifest).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        cache_s: float = 5.0,
        builds: PublishedBuilds | None = None,
        clock: Callable[[], float] = time.time,
        data_files_every_s: float = DATA_FILES_EVERY_S,
    ) -> None:
        self._settings = settings
        self._cache_s = cache_s
        self._builds = builds
        self._clock = clock
        self._data_files_every_s = data_files_every_s
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._refreshed_at: float | None = None
        self._catalog: Catalog | None = None
        self._consumer: Consumer | None = None
        self._instance: DagsterInstance | None = None
        self._raw = {name: RawTable(event_type) for name, event_type in event_types().items()}
        self._dead_letters = DeadLetters()
        self._dagster = DagsterFigures()
        self._oldest: dict[tuple[str, int], tuple[int, int]] = {}  # (topic, partition) -> (offset, timestamp ms)
        self._errors: Counter[str] = Counter()
        self._failing: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._refreshed_at is None or time.monotonic() - self._refreshed_at >= self._cache_s:
                self._families = self._read()
                self._refreshed_at = time.monotonic()
            return list(self._families)

    def describe(self) -> Iterable[Metric]:
        return []  # the families are only known by reading the sources; never read them at registration

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def _read(self) -> list[Metric]:
        started = time.monotonic()
        now = self._clock()
        families: list[Metric] = []
        up = GaugeMetricFamily(
            f"{PREFIX}_source_up", "Whether the last scrape could read the source (1) or not (0).", labels=["source"]
        )
        # Iceberg first, then Kafka: a commit in between makes the lag a little high, never negative.
        for source, read in (
            ("iceberg", self._iceberg),
            ("kafka", self._kafka),
            ("marts", self._marts),
            ("dbt", self._dbt),
            ("dagster", self._dagster_figures),
        ):
            try:
                families.extend(read(now))
            except Exception as error:  # a source that fails drops its figures and says so; the others go on
                first = source not in self._failing  # the traceback once, then one line per scrape
                log.warning("reading %s for the metrics failed: %s", source, error, exc_info=first)
                self._failing.add(source)
                self._errors[source] += 1
                up.add_metric([source], 0.0)
            else:
                if source in self._failing:
                    log.warning("reading %s for the metrics works again", source)
                    self._failing.discard(source)
                up.add_metric([source], 1.0)
        errors = CounterMetricFamily(
            f"{PREFIX}_source_errors",
            "Scrapes that could not read a source (see the exporter's log).",
            labels=["source"],
        )
        for source in SOURCES:
            errors.add_metric([source], float(self._errors[source]))
        duration = GaugeMetricFamily(
            f"{PREFIX}_collect_duration_seconds", "Seconds the last reading of every source took."
        )
        duration.add_metric([], time.monotonic() - started)
        return [*families, up, errors, duration]

    def _iceberg(self, now: float) -> list[Metric]:
        catalog = self._catalog = self._catalog or load_catalog(self._settings)
        rows = CounterMetricFamily(
            f"{PREFIX}_landed_rows",
            "Rows appended to the raw table (egress: rate() is rows landed per second).",
            labels=["topic", "event_type"],
        )
        freshness = GaugeMetricFamily(
            f"{PREFIX}_raw_freshness_seconds",
            "Seconds since the newest event time in the raw table (now - max(event_at)).",
            labels=["topic", "event_type"],
        )
        latency = HistogramMetricFamily(
            f"{PREFIX}_processing_latency_seconds",
            "Per micro-batch: seconds from the Kafka timestamp of its oldest message to its Iceberg commit.",
            labels=["topic", "event_type"],
        )
        files = GaugeMetricFamily(
            f"{PREFIX}_raw_data_files",
            "Data files in the raw table's current snapshot.",
            labels=["topic", "event_type"],
        )
        partitions = GaugeMetricFamily(
            f"{PREFIX}_raw_partitions", "Day partitions of the raw table holding data.", labels=["topic", "event_type"]
        )
        most_files = GaugeMetricFamily(
            f"{PREFIX}_raw_partition_data_files_max",
            "Data files in the raw table's day partition that has the most (small files pile up there).",
            labels=["topic", "event_type"],
        )
        for name, raw in self._raw.items():
            try:
                table = open_table(catalog, self._settings, name)
            except TableNotFoundError:
                continue  # nothing ingested yet
            raw.update(table)
            raw.count_data_files(table, time.monotonic(), self._data_files_every_s)
            labels = _labels(raw.event_type)
            if raw.snapshot_id is not None:
                rows.add_metric(labels, float(raw.rows_landed))
                latency.add_metric(labels, raw.latency.cumulative(), raw.latency.total)
            if raw.newest_event_at is not None:
                freshness.add_metric(labels, max(now - raw.newest_event_at.timestamp(), 0.0))
            if raw.data_files is not None:
                total, count, most = raw.data_files
                files.add_metric(labels, float(total))
                partitions.add_metric(labels, float(count))
                most_files.add_metric(labels, float(most))
        dead_letters = CounterMetricFamily(
            f"{PREFIX}_dead_letters",
            "Messages landed in raw.dead_letter instead of their raw table.",
            labels=["topic", "event_type"],
        )
        checks = CounterMetricFamily(
            f"{PREFIX}_dead_letter_checks",
            "Failed checks of the dead letters (one dead letter can fail several), by check name.",
            labels=["topic", "event_type", "check"],
        )
        try:
            dead_letter_table = open_table(catalog, self._settings, DEAD_LETTER_TABLE)
        except TableNotFoundError:
            dead_letter_table = None
        if dead_letter_table is not None:
            self._dead_letters.update(dead_letter_table)
        for event_type in event_types().values():  # every topic, zero included: alerts need the series
            dead_letters.add_metric(_labels(event_type), float(self._dead_letters.messages[event_type.topic]))
        for (topic, check), count in sorted(self._dead_letters.checks.items()):
            checks.add_metric([topic, _event_type_of(topic), check], float(count))
        return [rows, freshness, latency, files, partitions, most_files, dead_letters, checks]

    def _kafka(self, now: float) -> list[Metric]:
        consumer = self._consumer = self._consumer or make_consumer(self._settings)
        # A broker that does not answer fails the source in seconds, within a scrape's timeout (the
        # reader's own metadata timeout is 10 s per call).
        try:
            consumer.list_topics(timeout=KAFKA_TIMEOUT_S)
        except KafkaException as error:
            raise BrokerUnavailableError(
                f"Kafka at {self._settings.bootstrap_servers} does not answer ({error}): is the broker running "
                "(`analytics-platform broker status`), and is PLATFORM_KAFKA_BOOTSTRAP_SERVERS right?"
            ) from error
        ingress = CounterMetricFamily(
            f"{PREFIX}_kafka_messages",
            "Messages produced to the partition: its log-end offset (ingress: rate() is messages per second).",
            labels=["topic", "event_type", "partition"],
        )
        egress = CounterMetricFamily(
            f"{PREFIX}_ingested_messages",
            "The partition's next offset stored in Iceberg: messages taken out of Kafka, as raw rows or dead letters.",
            labels=["topic", "event_type", "partition"],
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_lag_messages",
            "Messages in the partition not landed yet: log end - next offset stored in Iceberg.",
            labels=["topic", "event_type", "partition"],
        )
        lag_seconds = GaugeMetricFamily(
            f"{PREFIX}_lag_seconds",
            "Age of the oldest message of the partition not landed yet (0 when caught up).",
            labels=["topic", "event_type", "partition"],
        )
        for raw in self._raw.values():
            topic = raw.event_type.topic
            stored = raw.offsets or StoredOffsets(topic)
            for partition, log in sorted(probe_log_bounds(consumer, topic).items()):
                labels = [*_labels(raw.event_type), str(partition)]
                next_offset = stored.next_offsets.get(partition, log.start)
                behind = max(log.end - next_offset, 0)
                ingress.add_metric(labels, float(log.end))
                egress.add_metric(labels, float(stored.next_offsets.get(partition, 0)))
                lag.add_metric(labels, float(behind))
                age = 0.0
                if behind:
                    oldest = max(next_offset, log.start)
                    known = self._oldest.get((topic, partition))
                    if known is None or known[0] != oldest:
                        known = (oldest, message_timestamp(consumer, topic, partition, oldest)[1])
                        self._oldest[(topic, partition)] = known
                    age = max(now - known[1] / 1000, 0.0)
                lag_seconds.add_metric(labels, age)
        return [ingress, egress, lag, lag_seconds]

    def _marts(self, now: float) -> list[Metric]:
        if self._builds is None:
            from analytics_platform.serving.published import PublishedBuilds

            self._builds = PublishedBuilds(self._settings, keep_s=60.0)
        marts = GaugeMetricFamily(
            f"{PREFIX}_mart_freshness_seconds",
            "Seconds since the newest event of this type the published marts reflect (the last full or daily build).",
            labels=["topic", "event_type"],
        )
        live = GaugeMetricFamily(
            f"{PREFIX}_live_mart_freshness_seconds",
            "Seconds since the newest event of this type the published per-minute (live) facts reflect.",
            labels=["topic", "event_type"],
        )
        try:
            build = self._builds.current()
        except NotPublishedError:
            return [marts, live]  # nothing built yet: no figure (the raw freshness still says how old data is)
        known = event_types()
        for family, is_live in ((marts, False), (live, True)):
            for name, pin in sorted(build.as_of(is_live).raw.items()):
                if name in known and pin.newest_event_at is not None:
                    family.add_metric(_labels(known[name]), max(now - pin.newest_event_at.timestamp(), 0.0))
        return [marts, live]

    def _dbt(self, now: float) -> list[Metric]:
        duration = GaugeMetricFamily(
            f"{PREFIX}_dbt_build_duration_seconds",
            "Seconds the last dbt command of each kind of build took (dbt's run_results.json).",
            labels=["dbt_target"],
        )
        for target, seconds in dbt_durations(self._settings).items():
            duration.add_metric([target], seconds)
        return [duration]

    def _dagster_figures(self, now: float) -> list[Metric]:
        from analytics_platform.defs.ingestion.jobs import ingest_job_name

        if self._instance is None:
            from analytics_platform.local.instance import get_instance

            self._instance = get_instance(self._settings)
        self._dagster.update(self._instance)
        failed = CounterMetricFamily(
            f"{PREFIX}_failed_runs",
            "Dagster runs that failed, by job; ingest runs carry their topic.",
            labels=["dagster_job", "topic", "event_type"],
        )
        counts = Counter(self._dagster.failed)
        for event_type in event_types().values():  # every ingest job, zero included: alerts need the series
            counts.setdefault((ingest_job_name(event_type), event_type.topic), 0)
        for (job, topic), count in sorted(counts.items()):
            failed.add_metric([job, topic, _event_type_of(topic)], float(count))
        commit = HistogramMetricFamily(
            f"{PREFIX}_commit_duration_seconds",
            "Seconds of each raw micro-batch's Iceberg commit (the raw assets' materializations in Dagster).",
            labels=["topic", "event_type"],
        )
        for topic, histogram in sorted(self._dagster.commit.items()):
            commit.add_metric([topic, _event_type_of(topic)], histogram.cumulative(), histogram.total)
        return [failed, commit]
