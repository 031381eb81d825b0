"""Planning arithmetic, without a broker: fair shares of a budget, and a run's range cut into micro-batches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics_platform.ingest.plan import BatchPlan, fair_share, micro_batches
from analytics_platform.lakehouse.offsets import StoredOffsets

pytestmark = pytest.mark.fast

TOPIC = "events.purchase"


def test_fair_share_gives_every_partition_its_part_and_the_rest_to_those_with_more() -> None:
    assert fair_share({0: 10, 1: 1_000, 2: 1_000}, 100) == {0: 10, 1: 45, 2: 45}
    assert fair_share({0: 0, 1: 7}, 100) == {0: 0, 1: 7}  # less available than the budget: everything
    assert fair_share({0: 5, 1: 5, 2: 5}, 2) == {0: 1, 1: 1, 2: 0}  # a budget smaller than the partitions
    assert fair_share({}, 10) == {}


@given(
    available=st.dictionaries(st.integers(0, 11), st.integers(0, 10_000), max_size=12),
    budget=st.integers(1, 50_000),
)
@settings(max_examples=300, deadline=None, derandomize=True)
def test_fair_share_never_exceeds_what_is_available_or_the_budget_and_wastes_nothing(
    available: dict[int, int], budget: int
) -> None:
    taken = fair_share(available, budget)
    assert set(taken) == set(available)
    assert all(0 <= taken[p] <= available[p] for p in available)
    assert sum(taken.values()) == min(budget, sum(available.values()))
    # No starvation: a partition gets less than another only if it has nothing more to give.
    for p in available:
        for q in available:
            if taken[p] < taken[q] - 1:
                assert taken[p] == available[p]


def test_micro_batches_cover_the_range_in_order_without_gaps_or_overlaps() -> None:
    plan = BatchPlan(TOPIC, {0: (100, 350), 1: (0, 40)})
    batches = micro_batches(plan, StoredOffsets(TOPIC, {0: 100, 1: 0}), max_events=100)
    assert [b.ranges for b in batches] == [
        {0: (100, 160), 1: (0, 40)},
        {0: (160, 260)},
        {0: (260, 350)},
    ]
    assert all(b.size <= 100 for b in batches)


def test_a_retried_run_continues_after_the_batches_it_committed() -> None:
    plan = BatchPlan(TOPIC, {0: (0, 300), 1: (0, 300)})
    committed = StoredOffsets(TOPIC, {0: 200, 1: 300})  # the first run died after some batches
    assert [b.ranges for b in micro_batches(plan, committed, max_events=1_000)] == [{0: (200, 300)}]
    beyond = StoredOffsets(TOPIC, {0: 900, 1: 950})  # a following run committed past the range
    assert micro_batches(plan, beyond, max_events=1_000) == []


def test_a_plan_round_trips_through_run_config_and_its_run_key_names_the_range() -> None:
    plan = BatchPlan(TOPIC, {2: (5, 9), 0: (0, 3)})
    assert BatchPlan.from_config(plan.to_config()) == plan
    assert plan.run_key == "events.purchase|0:0-3,2:5-9"
    assert plan.size == 7
