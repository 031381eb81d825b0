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
    window = RecentEventIds.of(ids("a", "b")).extended(ids("c", "d"), size=3)
    assert window.ids.to_list() == ["b", "c", "d"]
    assert window.contains(ids("a", "b", "d")).to_list() == [False, True, True]


def test_a_hash_collision_is_confirmed_against_the_ids_themselves() -> None:
    window = RecentEventIds.of(ids("a", "b"))
    # Pretend "zzz" collides with "a": same hash, different id. It must not count as already landed.
    colliding = RecentEventIds(window.ids, pl.Series([ids("zzz").hash()[0], window.hashes[1]]))
    assert colliding.contains(ids("zzz", "b")).to_list() == [False, True]
