"""Which small files of a day compaction takes: all of a finished day's, a current day's by size tier."""

from __future__ import annotations

from datetime import date

import pytest
from pyiceberg.manifest import DataFile

from analytics_platform.lakehouse.compaction import SMALL_SHARE, due_files, size_tier

pytestmark = pytest.mark.fast

TARGET = 128 * 1024 * 1024
LIMIT = int(SMALL_SHARE * TARGET)  # under this a file is small
FINISHED, TODAY = date(2026, 12, 2), date(2026, 12, 3)


def _files(size: int, count: int) -> list[DataFile]:
    return [DataFile.from_args(file_path=f"{size}-{i}", file_size_in_bytes=size, record_count=1) for i in range(count)]


def test_files_within_10x_of_each_other_share_a_tier() -> None:
    tiers = [
        size_tier(f, TARGET) for f in _files(LIMIT - 1, 1) + _files(LIMIT // 10 + 1, 1) + _files(LIMIT // 10 - 1, 1)
    ]
    assert tiers == [0, 0, 1]
    assert size_tier(_files(30_000, 1)[0], TARGET) == 3  # a 3-second commit's file


def test_a_finished_day_takes_every_small_file_a_current_day_each_full_tier() -> None:
    ingest, merged, big = _files(30_000, 50), _files(1_500_000, 49), _files(60_000_000, 3)
    small = ingest + merged + big
    assert due_files(FINISHED, small, FINISHED, TARGET, 50) == [small]
    assert due_files(FINISHED, ingest[:1], FINISHED, TARGET, 50) == []  # one file alone gains nothing
    assert due_files(TODAY, small, FINISHED, TARGET, 50) == [ingest]  # the 49 merged ones wait for a 50th
    assert due_files(TODAY, small + _files(1_200_000, 1), FINISHED, TARGET, 50) == [
        merged + _files(1_200_000, 1),
        ingest,
    ]
    assert due_files(TODAY, small, FINISHED, TARGET, 0) == []  # 0: only finished days
