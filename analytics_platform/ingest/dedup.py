"""The cross-batch dedup window: event_ids of a topic's most recently landed rows.

Kafka delivers at least once, so a producer retry or a replay can resend an event that already
landed. The gate rejects an event_id seen in the window; the window is bounded on purpose (checking
the whole table would make every batch cost as much as the table is big), and the staging models'
dedup and the raw ``unique_event_ids`` check catch what slips past it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
from pyiceberg.conversions import from_bytes
from pyiceberg.table import Table
from pyiceberg.types import TimestamptzType

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


PIECES = 16  # the window is read in pieces of at most 1/PIECES of its size, dropped one by one as ids age out


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
        return cls.read([ids.to_arrow()], piece_rows(len(ids)))

    @classmethod
    def read(cls, batches: Iterable[pa.Array | pa.ChunkedArray], piece_rows: int) -> RecentEventIds:
        """The window from its ids as they are read, converted batch by batch into pieces of at most
        ``piece_rows``: the window is never held whole as one table and one series besides its pieces."""
        pieces = (batch.slice(start, piece_rows) for batch in batches for start in range(0, len(batch), piece_rows))
        return cls(tuple(map(_piece, pieces)))

    @classmethod
    def empty(cls) -> RecentEventIds:
        return cls(())

    def _window(self) -> pl.DataFrame:
        return pl.concat(self.pieces, rechunk=False) if self.pieces else _piece(pa.array([], pa.string()))

    @property
    def ids(self) -> pl.Series:
        return self._window()["event_id"]

    def __len__(self) -> int:
        return sum(piece.height for piece in self.pieces)

    def contains(self, ids: pl.Series) -> pl.Series:
        """Per id of ``ids``: whether it is in the window."""
        window = self._window()
        matched = window.filter(pl.col("hash").is_in(ids.hash().implode()))["event_id"]
        return ids.is_in(matched.implode())

    def extended(self, ids: pa.Array | pa.ChunkedArray, size: int) -> RecentEventIds:
        """This window with ``ids`` (as landed) appended, keeping at least the newest ``size``: the oldest
        pieces are dropped while the rest hold ``size`` ids."""
        pieces = [*self.pieces, _piece(ids)]
        held = len(self) + len(ids)
        while pieces and held - pieces[0].height >= size:
            held -= pieces.pop(0).height
        return RecentEventIds(tuple(pieces))


def piece_rows(size: int) -> int:
    """The most ids of a piece of a window of ``size``."""
    return max(1, -(-size // PIECES))


def _piece(ids: pa.Array | pa.ChunkedArray) -> pl.DataFrame:
    """``ids`` and their hashes in memory of their own: polars copies Arrow strings into its own, where a
    slice of a polars series would keep all of the series' strings alive."""
    own = pl.Series("event_id", ids, dtype=pl.String)
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


def recent_event_ids(table: Table, window: int) -> Iterator[pa.Array]:
    """The event_ids of (at least) the ``window`` most recently landed rows, batch by batch as read: the
    cross-batch dedup set.

    Bounded on purpose: checking against the whole table would make every batch cost as much as the
    table is big. The window is found from the data files' ``ingested_at`` bounds and row counts (not
    from snapshot history, which is expired) and read with a filter on ``ingested_at``, which Iceberg's
    column metrics turn into skipping every older data file.
    """
    if window == 0 or table.current_snapshot() is None:
        return
    cutoff = _window_cutoff(table, window)
    row_filter = f"ingested_at >= '{cutoff.isoformat()}'" if cutoff is not None else "true"
    for batch in table.scan(row_filter=row_filter, selected_fields=("event_id",)).to_arrow_batch_reader():
        yield batch.column("event_id")


@dataclass
class DedupWindow:
    """The event_ids of the ``size`` most recently landed rows of one table, carried across a run's
    micro-batches so that only the run's first batch reads them from the table."""

    size: int
    event_ids: RecentEventIds

    @classmethod
    def read(cls, table: Table, size: int) -> DedupWindow:
        return cls(size, RecentEventIds.read(recent_event_ids(table, size), piece_rows(size)))

    def extend(self, landed: pa.ChunkedArray | pa.Array) -> None:
        if self.size:
            self.event_ids = self.event_ids.extended(landed, self.size)
