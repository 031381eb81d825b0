"""How an ingest batch commits its rows and offsets beside the other writers of its raw table.

Raw tables refuse pyiceberg's silent commit retries (``commit.retry.num-retries=0``): a blind retry would
rebase a stale batch onto a writer that landed the same offsets, and land them twice. Two kinds of
writer may legitimately commit while a batch is in flight, and a batch that lost to one of them appends
again on top of it, after checking explicitly that this is safe:

- maintenance (compaction, moving days to cold storage, retention), which adds no rows and repeats the
  newest offsets (:mod:`analytics_platform.lakehouse.maintenance`);
- another partition group of the same topic (``PLATFORM_INGEST_WORKERS_PER_TOPIC``), which lands other
  partitions. Groups own disjoint partitions, so the batch's own partitions' stored offsets are still its
  start: that is what is checked, per partition, before appending again. If any of them moved, another
  writer landed the same range and the batch fails (:class:`ConcurrentIngestError`) as it always did.

Every ingest snapshot records the offsets of every partition of the topic (resuming reads only the newest
snapshot that has offsets), so an append again rebuilds its summary from the reloaded table: its own
partitions' new offsets over the other groups' current ones, never their stale values from when the
batch began. Its rows are stamped with a new ``ingested_at`` too, so that, as without groups, rows
ingested after a snapshot are exactly the rows committed after it (lineage, "event days touched since").
Anything else committed meanwhile (a replay, a re-read, an offsets reset, an expired base) is not
reasoned about: the batch fails and is re-planned, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from analytics_platform.exceptions import ConcurrentIngestError
from analytics_platform.lakehouse.maintenance import is_maintenance
from analytics_platform.lakehouse.offsets import (
    NEXT_OFFSETS_KEY,
    RESET_KEY,
    TOPIC_KEY,
    StoredOffsets,
    offsets_properties,
    stored_offsets,
)
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, properties

COMMIT_ATTEMPTS = 20  # each lost attempt means another group committed: N groups rarely lose more than N - 1


@dataclass(frozen=True)
class BatchOffsets:
    """The offsets a batch commits: ``[starts[p], ends[p])`` of each partition it read, and the fingerprint
    of the last message it landed per partition."""

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]
    fingerprints: dict[int, str]

    def moved(self, stored: StoredOffsets) -> dict[int, int]:
        """The batch's partitions whose stored offset is no longer its start, with that offset: non-empty
        means another writer landed (part of) this range."""
        return {p: stored.next_offset(p) for p, start in sorted(self.starts.items()) if stored.next_offset(p) != start}

    def summary(self, stored: StoredOffsets) -> tuple[dict[int, int], dict[str, str]]:
        """The topic's next offsets after this batch lands on top of ``stored`` (the other partitions' as
        stored), and the summary properties that record them."""
        next_offsets = dict(stored.next_offsets) | self.ends
        fingerprints = dict(stored.fingerprints) | self.fingerprints
        return next_offsets, offsets_properties(self.topic, self.starts, next_offsets, fingerprints)


def is_other_ingest(snapshot: object, topic: str) -> bool:
    """An ingest batch of ``topic`` (it records offsets), not an offsets reset."""
    summary = properties(snapshot)
    return summary.get(TOPIC_KEY) == topic and NEXT_OFFSETS_KEY in summary and RESET_KEY not in summary


def moved_only_beside(table: Table, since: int | None, topic: str) -> bool:
    """Whether every snapshot committed after ``since`` (None: the table had none) is maintenance or an
    ingest batch of ``topic``: writers a batch may append beside once its own offsets are checked.

    False if ``since`` is no longer in the table's history: what happened since cannot be told."""
    current = table.current_snapshot()
    if current is None:
        return since is None
    for snapshot in ancestors_of(current, table.metadata):
        if snapshot.snapshot_id == since:
            return True
        if not (is_maintenance(snapshot) or is_other_ingest(snapshot, topic)):
            return False
    return since is None


def _restamped(rows: pa.Table, summary: dict[str, str]) -> tuple[pa.Table, dict[str, str]]:
    """``rows`` and ``summary`` with a new ingest time, now (see the module docstring)."""
    if INGESTED_AT_KEY not in summary or "ingested_at" not in rows.column_names:
        return rows, summary
    now = datetime.now(UTC)
    index = rows.column_names.index("ingested_at")
    column = pa.repeat(pa.scalar(now, type=rows.schema.field(index).type), rows.num_rows)
    return rows.set_column(index, rows.schema.field(index), column), summary | {INGESTED_AT_KEY: now.isoformat()}


@dataclass(frozen=True)
class Committed:
    """What an ingest append committed: the topic's next offsets in its summary, and the attempts it took."""

    next_offsets: dict[int, int]
    attempts: int
    ingested_at: str | None


def append_batch(
    table: Table,
    rows: pa.Table,
    batch: BatchOffsets,
    stored: StoredOffsets,
    snapshot_properties: dict[str, str],
    attempts: int = COMMIT_ATTEMPTS,
) -> Committed:
    """Append ``rows`` with ``batch``'s offsets (over ``stored``, read from ``table`` as loaded) in one
    snapshot; if the commit lost to maintenance or to another partition group, append again on top of it
    (``table`` is reloaded), as the module docstring says.

    Raises:
        ConcurrentIngestError: another writer landed offsets of this batch's partitions, or a writer that is
            neither maintenance nor an ingest batch of the topic committed, or the table kept moving;
            nothing was written. Re-plan from the offsets now stored.
    """
    base = table.current_snapshot()
    base_id = base.snapshot_id if base is not None else None
    for attempt in range(1, attempts + 1):
        next_offsets, offsets = batch.summary(stored)
        summary = snapshot_properties | offsets
        try:
            table.append(rows, snapshot_properties=summary)
            return Committed(next_offsets, attempt, summary.get(INGESTED_AT_KEY))
        except CommitFailedException as error:
            table.refresh()
            stored = stored_offsets(table, batch.topic)
            if moved := batch.moved(stored):
                raise ConcurrentIngestError(
                    f"{'.'.join(table.name())} moved while this batch was in flight: the stored offsets {moved} of "
                    f"its partitions are no longer its start {batch.starts}; another writer landed them first and "
                    "nothing was written. Re-plan the batch."
                ) from error
            if not moved_only_beside(table, base_id, batch.topic):
                raise ConcurrentIngestError(
                    f"{'.'.join(table.name())} moved while this batch was in flight ({error}): a writer other than "
                    "maintenance or another partition group committed; nothing was written. Re-plan the batch."
                ) from error
            if attempt == attempts:
                raise ConcurrentIngestError(
                    f"{'.'.join(table.name())} moved during each of {attempts} attempts to append this batch; nothing "
                    "was written. Re-plan the batch (fewer PLATFORM_INGEST_WORKERS_PER_TOPIC if this recurs)."
                ) from error
            current = table.current_snapshot()
            base_id = current.snapshot_id if current is not None else None
            rows, snapshot_properties = _restamped(rows, snapshot_properties)
    raise AssertionError("unreachable: the last attempt returns or raises")
