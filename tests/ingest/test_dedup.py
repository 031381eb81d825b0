"""The dedup window's lookups, without a table: hash matches are confirmed, so a collision rejects nothing."""

from __future__ import annotations

import polars as pl
import pytest

from analytics_platform.ingest.dedup import RecentEventIds

pytestmark = pytest.mark.fast


def ids(*values: str) -> pl.Series:
    return pl.Series("event_id", list(values), dtype=pl.String)


def test_contains_finds_exactly_the_ids_in_the_window() -> None:
    window = RecentEventIds.of(ids("a", "b", "c"))
    assert window.contains(ids("b", "x", "c", "a")).to_list() == [True, False, True, True]
    assert RecentEventIds.empty().contains(ids("a")).to_list() == [False]


def test_extended_keeps_the_newest_ids_only() -> None:
    window = RecentEventIds.of(ids("a", "b")).extended(ids("c", "d").to_arrow(), size=3)
    assert window.ids.to_list() == ["b", "c", "d"]
    assert window.contains(ids("a", "b", "d")).to_list() == [False, True, True]


def test_the_window_drops_its_oldest_pieces_once_the_newer_ones_hold_it() -> None:
    landed = [f"e{n}" for n in range(32)]
    window = RecentEventIds.of(ids(*landed))  # 16 pieces of 2
    for batch in range(10):
        new = [f"b{batch}-{n}" for n in range(5)]
        landed += new
        window = window.extended(ids(*new).to_arrow(), size=32)
        held = window.ids.to_list()
        assert held == landed[-len(held) :], "the newest ids, in order"
        assert 32 <= len(held) < 32 + 5, "at least the window, never a whole batch more"
    assert window.contains(ids("e0", landed[-1], landed[-32])).to_list() == [False, True, True]


def _bytes_held(series: pl.Series) -> int:
    """The bytes of every buffer ``series`` keeps alive (polars' estimated size counts only what it shows)."""
    return series.to_arrow(compat_level=pl.CompatLevel.newest()).get_total_buffer_size()


def test_each_piece_holds_only_its_own_strings() -> None:
    landed = ids(*[f"{n:040d}" for n in range(160_000)])  # 6.4 MB of ids, read as one batch
    window = RecentEventIds.read([landed.to_arrow()], piece_rows=10_000)
    assert [piece.height for piece in window.pieces] == [10_000] * 16
    one_piece = 10_000 * (40 + 16)  # each id's characters and its view
    assert all(_bytes_held(piece["event_id"]) < 1.5 * one_piece for piece in window.pieces)
    newer = ids(*[f"new-{n}" for n in range(10)])
    window = window.extended(newer.to_arrow(), size=30_000)  # keeps the last three pieces and the new one
    assert window.ids.to_list() == landed[-30_000:].to_list() + newer.to_list()
    assert _bytes_held(window.ids) < 1.5 * 3 * one_piece + 1_000


def test_a_hash_collision_is_confirmed_against_the_ids_themselves() -> None:
    window = RecentEventIds.of(ids("a", "b"))
    # Pretend "zzz" collides with "a": same hash, different id. It must not count as already landed.
    colliding = pl.DataFrame({"event_id": ["a", "b"], "hash": [ids("zzz").hash()[0], ids("b").hash()[0]]})
    assert RecentEventIds((colliding,)).contains(ids("zzz", "b")).to_list() == [False, True]
    assert window.contains(ids("zzz", "b")).to_list() == [False, True]
