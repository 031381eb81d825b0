"""The arithmetic behind the metrics and the raw assets' figures, without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from analytics_platform.kafka.reader import LogBounds
from analytics_platform.operations.batches import (
    batch_figures,
    lag_messages,
    latency_seconds,
    read_timestamps,
    run_figures,
    summary_properties,
    timestamps_summary,
)
from analytics_platform.operations.metrics import Histogram, commit_seconds

pytestmark = pytest.mark.fast


@dataclass(frozen=True)
class Batch:
    timestamps: dict[str, int] | None = None
    committed_ms: int | None = None
    data_files: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def test_timestamps_summary_ignores_messages_without_a_timestamp() -> None:
    # 100 messages at 1,000..100,000 ms, and two the client reports without a timestamp (-1).
    summary = timestamps_summary([-1, *range(100_000, 0, -1_000), -1])
    assert summary == {"min": 1_000, "p05": 5_000, "p50": 50_000, "max": 100_000, "count": 100}
    assert timestamps_summary([-1, -1]) is None
    assert read_timestamps(summary_properties(summary, None)) == summary


def test_latency_is_the_commit_minus_the_timestamps_quantiles() -> None:
    summary = {"min": 1_000, "p05": 5_000, "p50": 50_000, "max": 100_000, "count": 100}
    assert latency_seconds(summary, 101_000) == {"p50": 51.0, "p95": 96.0, "max": 100.0}
    assert latency_seconds(summary, 0) == {"p50": 0.0, "p95": 0.0, "max": 0.0}  # a clock ahead: no delay


def test_lag_counts_a_partition_never_landed_from_its_first_offset() -> None:
    bounds = {0: LogBounds(0, 30), 1: LogBounds(0, 20), 2: LogBounds(7, 11)}
    assert lag_messages(bounds, {0: 20, 1: 20}) == 10 + 0 + 4
    assert lag_messages(bounds, {0: 35, 1: 20, 2: 11}) == 0  # past the end (a replaced log): no lag


def test_run_figures_report_every_commit_only_when_batches_were_not_shown_one_by_one() -> None:
    summary = {"min": 1_000, "p05": 5_000, "p50": 50_000, "max": 100_000, "count": 100}
    first = Batch(summary, 101_000, 3, {"commit": 0.25})
    second = Batch(None, None, 4, {"commit": 0.5})
    assert batch_figures(first, 12) == {
        "lag_messages": 12,
        "processing_latency_p95_s": 96.0,
        "processing_latency_max_s": 100.0,
        "commit_seconds": 0.25,
        "data_files": 3,
    }
    assert run_figures([first, second], 0, followed=True) == {"lag_messages": 0, "data_files": 4}
    not_followed = run_figures([first, second], None, followed=False)
    assert not_followed == {
        "data_files": 4,
        "processing_latency_p95_s": 96.0,
        "processing_latency_max_s": 100.0,
        "commit_seconds": 0.5,
        "commit_seconds_batches": [0.25, 0.5],
    }
    # What the exporter's commit histogram takes from each kind of materialization.
    assert commit_seconds(not_followed | {"micro_batches": 2}) == [0.25, 0.5]
    assert commit_seconds(batch_figures(first, None)) == [0.25]  # one batch of a following run
    assert commit_seconds(run_figures([first], 0, followed=True) | {"micro_batches": 1}) == []


def test_histogram_buckets_are_cumulative_with_inf_last() -> None:
    histogram = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 9.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("1.0", 2.0), ("5.0", 3.0), ("+Inf", 4.0)]
    assert (histogram.count, histogram.total) == (4, 13.5)
