"""The cross-batch dedup window: event_ids of a topic's most recently landed rows.

Kafka delivers at least once, so a producer retry or a replay can resend an event that already
landed. The gate rejects an event_id seen in the window; the window is bounded on purpose (checking
the whole table would make every batch cost as much as the table is big), and the staging models'
dedup and the raw ``unique_event_ids`` check catch what slips past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
from pyiceberg.conversions import from_bytes
from pyiceberg.table import Table
from pyiceberg.types import TimestamptzType

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RecentEventIds:
    """The event_ids of the dedup window and their 64-bit hashes, computed once as rows land.

    A batch is looked up by hash (a string ``is_in`` of 100k ids against a 1M-id window took 0.3-0.5 s,
    half of a batch's decode; the hash lookup ~30 ms), and only the rare hash matches are confirmed
    against the ids themselves, so a collision never rejects an event.
    """

    ids: pl.Series
    hashes: pl.Series

    @classmethod
    def of(cls, ids: pl.Series) -> RecentEventIds:
        return cls(ids, ids.hash())

    @classmethod
    def empty(cls) -> RecentEventIds:
        return cls.of(pl.Series("event_id", [], dtype=pl.String))

    def contains(self, ids: pl.Series) -> pl.Series:
        """Per id of ``ids``: whether it is in the window."""
        hashes = ids.hash()
        maybe = hashes.is_in(self.hashes.implode())
        if not maybe.any():
            return maybe
        suspects = self.ids.filter(self.hashes.is_in(hashes.filter(maybe).implode()))
        return maybe & ids.is_in(suspects.implode())

    def extended(self, ids: pl.Series, size: int) -> RecentEventIds:
        """This window with ``ids`` appended, keeping the newest ``size``."""
        return RecentEventIds(pl.concat([self.ids, ids]).tail(size), pl.concat([self.hashes, ids.hash()]).tail(size))


def _window_cutoff(table: Table, window: int) -> datetime | None:
    """The oldest ``ingested_at`` among the newest data files holding at least ``window`` rows
    (None: read every row, as when a file has no column metrics)."""
    column = table.schema().find_field("ingested_at")
    files: list[tuple[int, int, int]] = []
    for task in table.scan(selected_fields=("ingested_at",)).plan_files():
        lower, upper = task.file.lower_bounds.get(column.field_id), task.file.upper_bounds.get(column.field_id)
        if lower is None or upper is None:
            return None
        files.append(
            (
                int(from_bytes(TimestamptzType(), upper)),
                int(from_bytes(TimestamptzType(), lower)),
                task.file.record_count,
            )
        )
    cutoff, landed = None, 0
    for _, lower_us, rows in sorted(files, reverse=True):  # newest first
        cutoff = lower_us if cutoff is None else min(cutoff, lower_us)
        landed += rows
        if landed >= window:
            break
    return None if cutoff is None else EPOCH + timedelta(microseconds=cutoff)


def recent_event_ids(table: Table, window: int) -> pl.Series:
    """The event_ids of (at least) the ``window`` most recently landed rows: the cross-batch dedup set.

    Bounded on purpose: checking against the whole table would make every batch cost as much as the
    table is big. The window is found from the data files' ``ingested_at`` bounds and row counts (not
    from snapshot history, which is expired) and read with a filter on ``ingested_at``, which Iceberg's
    column metrics turn into skipping every older data file.
    """
    empty = pl.Series("event_id", [], dtype=pl.String)
    if window == 0 or table.current_snapshot() is None:
        return empty
    cutoff = _window_cutoff(table, window)
    row_filter = f"ingested_at >= '{cutoff.isoformat()}'" if cutoff is not None else "true"
    scan = table.scan(row_filter=row_filter, selected_fields=("event_id",))
    return pl.Series("event_id", scan.to_arrow().column("event_id"), dtype=pl.String)


@dataclass
class DedupWindow:
    """The event_ids of the ``size`` most recently landed rows of one table, carried across a run's
    micro-batches so that only the run's first batch reads them from the table."""

    size: int
    event_ids: RecentEventIds

    @classmethod
    def read(cls, table: Table, size: int) -> DedupWindow:
        return cls(size, RecentEventIds.of(recent_event_ids(table, size)))

    def extend(self, landed: pa.ChunkedArray | pa.Array) -> None:
        if self.size:
            self.event_ids = self.event_ids.extended(pl.Series("event_id", landed, dtype=pl.String), self.size)
