"""Which job rebuilds the marts after new rows, and over which days: pure functions, no Dagster."""

from __future__ import annotations

import json
from datetime import date

import pytest

from analytics_platform.warehouse.live import days_between
from analytics_platform.warehouse.refresh import (
    BUILD_JOB,
    DAYS_TAG,
    PARTITIONS_START,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REFRESH_JOB,
    marts_run,
    partition_range,
)

pytestmark = pytest.mark.fast

TODAY = date(2026, 11, 20)


def test_partition_range_clips_to_the_partitions_that_exist() -> None:
    assert partition_range((date(2026, 11, 1), date(2026, 11, 3)), TODAY) == ("2026-11-01", "2026-11-03")
    assert partition_range((date(2020, 1, 1), date(2026, 11, 2)), TODAY) == (PARTITIONS_START, "2026-11-02")
    assert partition_range((date(2026, 11, 19), date(2027, 1, 1)), TODAY) == ("2026-11-19", "2026-11-20")
    assert partition_range((date(2020, 1, 1), date(2020, 1, 2)), TODAY) is None  # before the first partition
    assert partition_range((date(2027, 1, 1), date(2027, 1, 2)), TODAY) is None  # events from the future


def test_marts_run_rebuilds_the_touched_days_in_one_run_or_builds_without_partitions() -> None:
    job, tags = marts_run((date(2026, 11, 2), date(2026, 11, 4)), TODAY)
    assert job == REFRESH_JOB
    assert tags == {
        DAYS_TAG: json.dumps(["2026-11-02", "2026-11-04"]),
        RANGE_START_TAG: "2026-11-02",
        RANGE_END_TAG: "2026-11-04",
    }
    assert marts_run(None, TODAY) == (BUILD_JOB, {})  # nothing landed since: the models without partitions
    old = (date(2019, 1, 1), date(2019, 1, 2))
    assert marts_run(old, TODAY) == (BUILD_JOB, {DAYS_TAG: json.dumps(["2019-01-01", "2019-01-02"])})


def test_days_between_lists_every_day_inclusive() -> None:
    assert days_between(("2026-10-30", "2026-11-02")) == ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]
    assert days_between(("2026-11-02", "2026-11-02")) == ["2026-11-02"]
