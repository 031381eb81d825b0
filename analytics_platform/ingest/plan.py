"""Planning ingestion: which offset range of a topic the next run and its micro-batches land.

Where a topic's table left off is the offsets in its latest ingest snapshot; how far the log goes is
probed from Kafka (the embedded broker's high watermark is wrong, so the tail is read). A run's range
is then cut into micro-batches of at most ``batch_max_events``, each its own snapshot. Pure
functions (:func:`fair_share`, :func:`micro_batches`) do the arithmetic and are tested without a broker.

With ``PLATFORM_INGEST_WORKERS_PER_TOPIC`` above 1, a topic's partitions are split into fixed
:class:`PartitionGroup` s (partition ``p`` belongs to group ``p % groups``) and each group is planned on
its own, from its own partitions' stored offsets: groups never plan the same partition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from confluent_kafka import Consumer
from pyiceberg.catalog import Catalog

from analytics_platform.contracts.envelope import event_type_for_topic
from analytics_platform.kafka.reader import check_stored_offsets, log_bounds, probe_log_bounds
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import StoredOffsets, stored_offsets
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.settings import Settings


@dataclass(frozen=True)
class PartitionGroup:
    """One of a topic's ``count`` fixed partition groups: partition ``p`` belongs to group ``p % count``.

    The rule needs no partition list, so it holds when partitions are added, and it interleaves partitions
    (which Kafka fills about evenly) so the groups get similar shares. ``count`` 1 is the whole topic.
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition group {self.index} of {self.count} does not exist")

    def owns(self, partition: int) -> bool:
        return partition % self.count == self.index

    @property
    def label(self) -> str:
        """How runs and logs name it: ``<index>/<count>``."""
        return f"{self.index}/{self.count}"


WHOLE_TOPIC = PartitionGroup()


def partition_groups(count: int) -> list[PartitionGroup]:
    """Every group of a topic split ``count`` ways (``PLATFORM_INGEST_WORKERS_PER_TOPIC``)."""
    return [PartitionGroup(index, count) for index in range(count)]


@dataclass(frozen=True)
class BatchPlan:
    """A bounded offset range per partition, ``[start, end)``; identical plans have identical run keys."""

    topic: str
    ranges: dict[int, tuple[int, int]]

    @property
    def size(self) -> int:
        return sum(end - start for start, end in self.ranges.values())

    @property
    def run_key(self) -> str:
        spans = ",".join(f"{p}:{start}-{end}" for p, (start, end) in sorted(self.ranges.items()))
        return f"{self.topic}|{spans}"

    def to_config(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "ranges": json.dumps({str(p): r for p, r in sorted(self.ranges.items())}),
        }

    @classmethod
    def from_config(cls, config: dict[str, object]) -> BatchPlan:
        ranges = json.loads(str(config["ranges"]))
        return cls(topic=str(config["topic"]), ranges={int(p): (int(s), int(e)) for p, (s, e) in ranges.items()})


def fair_share(available: dict[int, int], budget: int) -> dict[int, int]:
    """Split ``budget`` events fairly over partitions (water-filling: no partition starves)."""
    taken = dict.fromkeys(available, 0)
    remaining, open_partitions = budget, sorted(p for p, n in available.items() if n > 0)
    while remaining > 0 and open_partitions:
        each = max(1, remaining // len(open_partitions))
        for partition in list(open_partitions):
            grant = min(each, available[partition] - taken[partition], remaining)
            taken[partition] += grant
            remaining -= grant
            if taken[partition] == available[partition]:
                open_partitions.remove(partition)
            if remaining == 0:
                break
    return taken


def plan_next_batch(
    settings: Settings,
    topic: str,
    *,
    catalog: Catalog | None = None,
    max_events: int | None = None,
    consumer: Consumer | None = None,
    group: PartitionGroup = WHOLE_TOPIC,
) -> BatchPlan | None:
    """The next range of ``topic``'s partitions in ``group`` (at most ``max_events``, default one
    micro-batch) from the offsets stored in Iceberg, or None if caught up."""
    catalog = catalog or load_catalog(settings)
    table = ensure_raw_table(catalog, settings, event_type_for_topic(topic))
    stored = stored_offsets(table, topic)
    bounds = probe_log_bounds(consumer, topic, group.owns) if consumer else log_bounds(settings, topic, group.owns)
    check_stored_offsets(stored, bounds, group.owns)
    # A partition never landed before starts at the log's first retained offset.
    starts = {p: stored.next_offsets.get(p, log.start) for p, log in bounds.items()}
    available = {p: bounds[p].end - starts[p] for p in bounds}
    taken = fair_share(available, max_events or settings.batch_max_events)
    ranges = {p: (starts[p], starts[p] + n) for p, n in taken.items() if n > 0}
    return BatchPlan(topic, ranges) if ranges else None


def plan_next_run(
    settings: Settings, topic: str, *, catalog: Catalog | None = None, group: PartitionGroup = WHOLE_TOPIC
) -> BatchPlan | None:
    """The range the next ingest run (of ``group``) lands: up to ``run_max_events``, in micro-batches
    (:func:`land_run`)."""
    return plan_next_batch(settings, topic, catalog=catalog, max_events=settings.run_max_events, group=group)


def micro_batches(plan: BatchPlan, stored: StoredOffsets, max_events: int) -> list[BatchPlan]:
    """A run's range cut into micro-batches of at most ``max_events``, from where the table's offsets
    stand (a retried run goes on after the batches it already committed)."""
    positions = {}
    for partition, (start, end) in plan.ranges.items():
        position = stored.next_offsets.get(partition, start)
        # At or past the end, the range has landed (a following run commits beyond its range); before
        # the start, the offsets went back: land_batch reports that mismatch.
        positions[partition] = min(position, end) if position >= start else start
    slices = []
    while taken := {
        p: n for p, n in fair_share({p: plan.ranges[p][1] - positions[p] for p in plan.ranges}, max_events).items() if n
    }:
        slices.append(BatchPlan(plan.topic, {p: (positions[p], positions[p] + n) for p, n in taken.items()}))
        positions = positions | {p: positions[p] + n for p, n in taken.items()}
    return slices
