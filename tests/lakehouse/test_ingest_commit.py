"""The conflict check of an ingest append (real Iceberg tables on the SQLite catalog, no broker): a batch
that lost its commit to another partition group appends again on top of it and carries that group's
offsets forward; one whose own partitions' offsets moved, or that lost to any other writer, fails."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyiceberg.table import Table

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import ConcurrentIngestError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.ingest_commit import BatchOffsets, Committed, append_batch
from analytics_platform.lakehouse.offsets import stored_offsets
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.settings import get_settings

pytestmark = pytest.mark.fast

PURCHASE = event_types()["purchase"]
TOPIC = PURCHASE.topic


def raw_table() -> Table:
    """The raw table as a writer loads it: each call is a writer of its own, at the table's current state."""
    settings = get_settings()
    return ensure_raw_table(load_catalog(settings), settings, PURCHASE)


def land(table: Table, ranges: dict[int, tuple[int, int]], ingested_at: str = "2026-12-04T05:00:00+00:00") -> Committed:
    """A batch of ``ranges`` (no rows: the offsets are what is checked), over the offsets ``table`` had
    when it was loaded."""
    batch = BatchOffsets(
        TOPIC,
        {p: start for p, (start, _) in ranges.items()},
        {p: end for p, (_, end) in ranges.items()},
        {p: f"fp{p}-{end}" for p, (_, end) in ranges.items()},
    )
    rows = pa.Table.from_pylist([], schema=table.schema().as_arrow())
    return append_batch(table, rows, batch, stored_offsets(table, TOPIC), {INGESTED_AT_KEY: ingested_at})


def test_a_group_that_lost_to_another_group_lands_on_top_and_keeps_its_offsets() -> None:
    land(raw_table(), {0: (0, 10), 1: (0, 10), 2: (0, 10), 3: (0, 10)})
    group_0 = raw_table()  # loaded: partitions 0-3 at 10
    group_1 = raw_table()
    first = land(group_1, {1: (10, 25), 3: (10, 30)}, ingested_at="2026-12-04T05:01:00+00:00")
    assert first.attempts == 1

    committed = land(group_0, {0: (10, 40), 2: (10, 15)})  # its table is stale: the commit fails once

    assert committed.attempts == 2
    assert committed.next_offsets == {0: 40, 1: 25, 2: 15, 3: 30}  # group 1's progress carried, not its stale 10s
    stored = stored_offsets(raw_table(), TOPIC)
    assert stored.next_offsets == {0: 40, 1: 25, 2: 15, 3: 30}
    assert stored.fingerprints == {0: "fp0-40", 1: "fp1-25", 2: "fp2-15", 3: "fp3-30"}
    # Stamped again when it went on top: ingest time still follows commit order (lineage relies on it).
    assert committed.ingested_at is not None and first.ingested_at is not None
    assert committed.ingested_at > first.ingested_at


def test_a_batch_whose_own_partitions_moved_is_a_real_conflict_and_writes_nothing() -> None:
    land(raw_table(), {0: (0, 10), 1: (0, 10)})
    stale = raw_table()
    land(raw_table(), {0: (10, 20)})  # another writer landed partition 0 from the same start
    before = raw_table().current_snapshot()

    with pytest.raises(ConcurrentIngestError, match=r"stored offsets \{0: 20\}.*Re-plan the batch"):
        land(stale, {0: (10, 20), 1: (10, 12)})

    after = raw_table()
    assert after.current_snapshot() == before  # nothing written
    assert stored_offsets(after, TOPIC).next_offsets == {0: 20, 1: 10}


def test_a_batch_that_lost_to_a_writer_without_offsets_fails_as_before() -> None:
    """A replay or re-read appends rows without offsets: the batch does not reason about it, it re-plans."""
    land(raw_table(), {0: (0, 10)})
    stale = raw_table()
    replay = raw_table()
    replay.append(pa.Table.from_pylist([], schema=replay.schema().as_arrow()), snapshot_properties={"replay.id": "x"})

    with pytest.raises(ConcurrentIngestError, match="other than maintenance or another partition group"):
        land(stale, {1: (0, 5)})
    assert stored_offsets(raw_table(), TOPIC).next_offsets == {0: 10}
