"""Live facts: the per-minute marts brought up to the latest raw snapshots every few seconds.

A full marts build (``refresh_marts``) pays a run launch and a minute or more of dbt on a small machine,
so an event would wait minutes to show in ``fct_events_per_minute``. The models tagged ``live`` in dbt
(the per-minute facts, which read only views over raw and a seed) are cheap to recompute for the days
new rows touched. The live follower (a long-lived Dagster run, see ``defs/transform/live.py``) does
that every ``marts_live_interval_s``, or less often when refreshes take long (:func:`pause_after`): copy
the published file, pin its raw views to the current snapshots, ``dbt run`` the live models over the
minutes the new rows touched (from the earliest on, so a refresh costs what landed since the last one,
not the day so far), publish.

Each build records the raw snapshots its live facts reflect (its live pins). The follower and full
builds publish under one lock, and a full build that finds a file published since it started brings
its live facts up to date first, so published live facts never go back in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.operations import tracing
from analytics_platform.settings import Settings
from analytics_platform.warehouse import builds
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.dbt import dbt_pointed_at, dbt_target
from analytics_platform.warehouse.refresh import (
    paced_period,
    partition_range,
    raw_snapshot_ids,
    touched_days,
    touched_times,
)

LIVE_TAG = "live"
LIVE_SLOT = "live"
RunDbt = Callable[[list[str], Path], None]
"""Runs a dbt command (arguments, target folder) and raises if it fails."""


class Log(Protocol):
    def info(self, msg: str) -> None: ...


def advance_live_pins(settings: Settings, build: Path, covered: tuple[str, str]) -> None:
    """After a daily build of the ``covered`` partitions: if every day touched since the build's live
    pins is among them, its live facts now reflect the snapshots its raw views read."""
    days = touched_days(settings, builds.read_pins(build, builds.LIVE_PINS) or {})
    keys = partition_range(days, datetime.now(UTC).date()) if days else None
    if keys is None or (covered[0] <= keys[0] and keys[1] <= covered[1]):
        builds.record_pins(build, builds.LIVE_PINS, builds.read_pins(build, builds.RAW_PINS) or {})


def catch_up_live_facts(run_dbt: RunDbt, settings: Settings, build: Path, log: Log) -> tuple[str, str] | None:
    """Pin the build's raw views to the current snapshots and rebuild its live facts over the days rows
    landed in since its live pins; returns those days as partition keys (None: no partition to rebuild)."""
    live = builds.read_pins(build, builds.LIVE_PINS) or {}
    now = builds.pin_raw_views(settings, load_catalog(settings), build)
    keys, since = None, None
    # Computed after pinning, from the tables' current state: a superset of the rows up to ``now``.
    if now != live and (times := touched_times(settings, live)):
        keys = partition_range((times[0].date(), times[1].date()), datetime.now(UTC).date())
        since = first_minute(times[0], keys) if keys else None
    if keys is not None:
        log.info(f"rebuilding the live facts of {keys[0]} .. {keys[1]} from {since:%Y-%m-%d %H:%M} UTC")
        with dbt_pointed_at(settings, build, LIVE_SLOT, keys, since):  # under the publish lock: one at a time
            run_dbt(["run", "--select", f"tag:{LIVE_TAG}"], dbt_target(settings, LIVE_SLOT))
    builds.record_pins(build, builds.LIVE_PINS, now)
    return keys


def first_minute(earliest: datetime, keys: tuple[str, str]) -> datetime:
    """The minute the live facts recompute from: that of the earliest new event, or the start of the
    first partition when that event is older than the partitions (clipped away by ``partition_range``).
    The per-minute facts of a minute depend only on it and the 14 before it, so new rows leave every
    earlier minute as it was."""
    minute = earliest.astimezone(UTC).replace(second=0, microsecond=0)
    return max(minute, datetime.fromisoformat(keys[0]).replace(tzinfo=UTC))


@dataclass(frozen=True)
class LiveRefresh:
    keys: tuple[str, str] | None  # the partitions rebuilt (None: the new rows touched none)
    seconds: dict[str, float]  # per phase: waiting for the publish lock, copy and pin, dbt, publish


def live_facts_behind(settings: Settings) -> bool:
    """Whether the published build has live facts and they are behind the raw tables' current snapshots.

    A build without live pins has no live facts to keep current: the first full build publishes after
    each of its steps, and a build of its snapshots step alone has none of the models the live facts
    read (a follower started on it failed for good). Its daily step records the first live pins."""
    published = current_build(settings)
    if published is None:
        return False
    live = builds.read_pins(published, builds.LIVE_PINS)
    return live is not None and raw_snapshot_ids(settings) != live


def refresh_live_facts(run_dbt: RunDbt, settings: Settings, log: Log) -> LiveRefresh | None:
    """One follower step: publish a build with live facts at the current raw snapshots, if they moved.

    Traced as a span ``refresh live facts`` with the build's id, linked to the ingest batches it brings in."""
    if not live_facts_behind(settings):
        return None
    tracing.setup(settings)
    clock = time.monotonic()
    seconds = {}

    def phase(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()

    with (
        builds.publish_lock(settings),
        tracing.span("refresh live facts", attributes={tracing.BUILD_KIND: LIVE_SLOT}) as span,
    ):
        phase("lock")
        build = builds.prepare_build(settings, load_catalog(settings))
        span.set_attribute(tracing.BUILD_ID, builds.build_id(build))
        previous = (builds.read_pins(build, builds.LIVE_PINS) or {}) if span.is_recording() else {}
        phase("copy")
        try:
            keys = catch_up_live_facts(run_dbt, settings, build, log)
        except BaseException:
            builds.discard(build)
            raise
        phase("dbt")
        builds.publish(settings, build)
        phase("publish")
        if span.is_recording():
            pins = builds.read_pins(build, builds.LIVE_PINS) or {}
            builds.link_raw_batches(span, settings, load_catalog(settings), previous, pins)
            if keys is not None:
                span.set_attribute("analytics_platform.days", list(keys))
            for name, value in seconds.items():
                span.set_attribute(f"analytics_platform.seconds.{name}", value)
    return LiveRefresh(keys, seconds)


def pause_after(settings: Settings, busy_s: float) -> float:
    """Seconds the follower waits after a step of ``busy_s``: the rest of its :func:`paced_period` at
    ``marts_live_interval_s`` and ``marts_live_max_busy_share`` (a refresh costs seconds of CPU however few
    rows it brings in)."""
    period = paced_period(settings.marts_live_interval_s, busy_s, settings.marts_live_max_busy_share)
    return max(period - busy_s, 0.0)


def days_between(keys: tuple[str, str]) -> list[str]:
    """Every day from ``keys[0]`` to ``keys[1]``, inclusive, as partition keys."""
    first, last = date.fromisoformat(keys[0]), date.fromisoformat(keys[1])
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]
