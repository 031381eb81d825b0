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


PIECES = 16  # the window read from the table is cut into this many pieces, dropped one by one as ids age out


@dataclass(frozen=True)
class RecentEventIds:
    """The event_ids of the dedup window, oldest first, with their 64-bit hashes, computed once as rows land.

    A batch is looked up by hash: the window's hashes are probed against a set of the batch's (a string
    ``is_in`` of 100k ids against a 1M-id window took 0.3-0.5 s, half of a batch's decode), and only the
    window's rows whose hash matched are compared as strings, so a collision never rejects an event.

    The window is kept in pieces with memory of their own (each batch's, and the window read from the
    table cut in ``PIECES``), and the oldest piece is dropped once the newer ones hold the window: memory
    stays at the window's size plus a piece, with no copy of the window per batch. Slicing one growing
    series instead kept every batch's strings alive until the whole read window had aged out.
    """

    pieces: tuple[pl.DataFrame, ...]  # columns event_id and hash

    @classmethod
    def of(cls, ids: pl.Series) -> RecentEventIds:
        step = max(1, -(-len(ids) // PIECES))
        return cls(tuple(_piece(ids.slice(start, step)) for start in range(0, len(ids), step)))

    @classmethod
    def empty(cls) -> RecentEventIds:
        return cls(())

    def _window(self) -> pl.DataFrame:
        return pl.concat(self.pieces, rechunk=False) if self.pieces else _piece(pl.Series([], dtype=pl.String))

    @property
    def ids(self) -> pl.Series:
        return self._window()["event_id"]

    def contains(self, ids: pl.Series) -> pl.Series:
        """Per id of ``ids``: whether it is in the window."""
        window = self._window()
        matched = window.filter(pl.col("hash").is_in(ids.hash().implode()))["event_id"]
        return ids.is_in(matched.implode())

    def extended(self, ids: pl.Series, size: int) -> RecentEventIds:
        """This window with ``ids`` appended, keeping at least the newest ``size``: the oldest pieces are
        dropped while the rest hold ``size`` ids."""
        pieces = [*self.pieces, _piece(ids)]
        held = sum(piece.height for piece in pieces)
        while pieces and held - pieces[0].height >= size:
            held -= pieces.pop(0).height
        return RecentEventIds(tuple(pieces))


def _piece(ids: pl.Series) -> pl.DataFrame:
    """``ids`` and their hashes in memory of their own: a slice of a series keeps all of its strings alive."""
    own = pl.Series("event_id", ids.to_arrow(), dtype=pl.String)
    return pl.DataFrame([own, own.hash().alias("hash")])


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
