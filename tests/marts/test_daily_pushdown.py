"""A daily build reads its days, not the whole raw table.

The staging views deduplicate with a window; a daily model's filter on its days only makes a
one-day build cheaper than a full one if DuckDB applies it below that window (and so in the Iceberg
scan). The query profile says how many rows the window saw: exactly the day's, not every raw row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from analytics_platform.warehouse.connections import connect_marts
from tests.landed import LandedMarts

pytestmark = pytest.mark.integration


def operators(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", []):
        yield from operators(child)


def test_a_days_filter_is_applied_below_the_staging_dedup_window(landed_marts: LandedMarts) -> None:
    visits = sorted(e["timestamp"][:10] for e in landed_marts.dataset.events if e["event_type"] == "user_visit")
    day = date.fromisoformat(visits[len(visits) // 2])
    expected = sum(1 for visit in visits if visit == day.isoformat())
    # What the macro in_partition_range renders for a one-day run (dbt_project/macros/daily_partitions.sql).
    in_day = f"event_at >= cast('{day}' as date) - 0 and event_at < cast('{day}' as date) + 1"

    with connect_marts(landed_marts.settings) as con:
        con.execute("pragma enable_profiling = 'no_output'")
        (count,) = con.execute(f"select count(*) from staging.stg_user_visits where {in_day}").fetchone() or (0,)
        profile = json.loads(con.get_profiling_information(format="json"))

    windows = [
        int(node["operator_cardinality"])
        for node in operators(profile)
        if "WINDOW" in str(node.get("operator_name", node.get("operator_type", "")))
    ]
    assert count == expected > 0
    assert len(visits) > 3 * expected  # the day is a small part of the table
    assert windows == [expected]
