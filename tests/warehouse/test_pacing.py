"""Pacing of the marts work beside ingestion: the live follower's pause between refreshes and the marts
sensor's spacing of full builds, each an interval stretched so the work stays a bounded share of the time."""

from __future__ import annotations

import pytest

from analytics_platform.settings import Settings
from analytics_platform.warehouse.live import pause_after
from analytics_platform.warehouse.refresh import next_build_due

pytestmark = pytest.mark.fast


def settings(interval_s: float, share: float) -> Settings:
    return Settings(marts_live_interval_s=interval_s, marts_live_max_busy_share=share)


def test_a_quick_refresh_waits_out_the_rest_of_the_interval() -> None:
    assert pause_after(settings(5.0, 0.3), busy_s=0.6) == pytest.approx(4.4)
    assert pause_after(settings(5.0, 0.3), busy_s=0.0) == pytest.approx(5.0)  # nothing to refresh


def test_a_long_refresh_keeps_the_follower_busy_at_most_the_share_of_its_time() -> None:
    pause = pause_after(settings(5.0, 0.3), busy_s=4.5)
    assert pause == pytest.approx(10.5)
    assert 4.5 / (4.5 + pause) == pytest.approx(0.3)
    # A busier machine makes the same refresh slower: the follower backs off in proportion.
    assert pause_after(settings(5.0, 0.3), busy_s=9.0) == pytest.approx(21.0)


def test_a_share_of_one_refreshes_back_to_back_once_the_interval_has_passed() -> None:
    assert pause_after(settings(5.0, 1.0), busy_s=4.5) == pytest.approx(0.5)
    assert pause_after(settings(5.0, 1.0), busy_s=7.0) == 0.0


def test_the_share_must_be_above_zero_and_at_most_one() -> None:
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match="marts_live_max_busy_share"):
            settings(5.0, share)


def test_a_full_build_is_due_an_interval_after_the_last_or_later_if_it_took_long() -> None:
    paced = Settings(marts_refresh_interval_s=300.0, marts_refresh_max_busy_share=0.3)
    assert next_build_due(paced, created_at=1000.0, took_s=None) == 1300.0  # duration unknown
    assert next_build_due(paced, created_at=1000.0, took_s=60.0) == 1300.0  # 60 s of every 300: 20%
    assert next_build_due(paced, created_at=1000.0, took_s=150.0) == pytest.approx(1500.0)  # 150 of 500: 30%
    back_to_back = Settings(marts_refresh_interval_s=0.0, marts_refresh_max_busy_share=1.0)
    assert next_build_due(back_to_back, created_at=1000.0, took_s=150.0) == 1150.0
