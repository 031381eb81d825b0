"""The live follower's pause between refreshes: the interval, stretched so refreshing stays a bounded share."""

from __future__ import annotations

import pytest

from analytics_platform.settings import Settings
from analytics_platform.warehouse.live import pause_after

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
