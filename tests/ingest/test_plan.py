"""Planning arithmetic, without a broker: fair shares of a budget, a run's range cut into micro-batches,
and the fixed partition groups of PLATFORM_INGEST_WORKERS_PER_TOPIC."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics_platform.ingest.plan import (
    WHOLE_TOPIC,
    BatchPlan,
    PartitionGroup,
    fair_share,
    micro_batches,
    partition_groups,
)
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


def test_partition_groups_split_every_partition_to_exactly_one_group_interleaved() -> None:
    groups = partition_groups(3)
    assert [g.label for g in groups] == ["0/3", "1/3", "2/3"]
    assert {g.label: [p for p in range(7) if g.owns(p)] for g in groups} == {
        "0/3": [0, 3, 6],
        "1/3": [1, 4],
        "2/3": [2, 5],
    }
    assert partition_groups(1) == [WHOLE_TOPIC] and all(WHOLE_TOPIC.owns(p) for p in range(12))
    with pytest.raises(ValueError, match="group 2 of 2"):
        PartitionGroup(2, 2)


@given(partitions=st.integers(1, 64), count=st.integers(1, 8))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_partition_groups_are_disjoint_and_cover_the_topic(partitions: int, count: int) -> None:
    owners = [[g.index for g in partition_groups(count) if g.owns(p)] for p in range(partitions)]
    assert all(len(owner) == 1 for owner in owners)  # each partition has exactly one writer
