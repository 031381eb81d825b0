"""Today's raw partition is compacted while it still receives data: the sensor requests a run once the day
holds PLATFORM_COMPACT_SMALL_FILES small files, one run at a time, and the run, alongside ingestion, loses
and doubles nothing (real broker, Iceberg and Dagster)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.maintenance.jobs import COMPACT_JOB
from analytics_platform.defs.maintenance.sensors import compact_when_small_files
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.ingest.land import land_run
from analytics_platform.ingest.plan import plan_next_run
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.compaction import files_by_day
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from tests.conftest import set_environment
from tests.helpers import produce_events

pytestmark = pytest.mark.integration

USER_VISIT = event_types()["user_visit"]
BATCH = 20  # events per micro-batch: one small file each
DUE_AT = 8  # small files that make today's partition due


def _evaluate(instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
    with dg.build_sensor_context(instance=instance, resources={"platform": PlatformResource()}) as context:
        result = compact_when_small_files(context)
    assert isinstance(result, dg.RunRequest | dg.SkipReason)
    return result


def _land_all(settings: Settings) -> None:
    while (plan := plan_next_run(settings, USER_VISIT.topic)) is not None:
        land_run(settings, plan)


def test_todays_partition_is_compacted_alongside_ingestion_once_it_holds_enough_small_files(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environment(
        monkeypatch,
        PLATFORM_BATCH_MAX_EVENTS=str(BATCH),
        # Small under 2.36 MB; one size tier is 2.36-23.6 KB, where a batch's file (~7.5 KB) sits mid-tier.
        PLATFORM_COMPACT_TARGET_MB="3",
        PLATFORM_COMPACT_SMALL_FILES=str(DUE_AT),
        # The events are today's from midnight on (about two hours of them): accept those still ahead of the
        # clock, as just after midnight UTC most are.
        PLATFORM_MAX_EVENT_FUTURE_S=str(24 * 3600),
    )
    settings = get_settings()
    today = datetime.now(UTC).date()
    events = [
        e
        for e in generate_events(4_000, seed=31, days=1, start=datetime.combine(today, time(0), UTC))
        if e["event_type"] == USER_VISIT.name
    ][: 14 * BATCH]
    assert len(events) == 14 * BATCH
    instance = get_instance(settings)
    table = ensure_raw_table(load_catalog(settings), settings, USER_VISIT)

    # Five small files today: not due yet.
    produce_events(settings, events[: 5 * BATCH])
    _land_all(settings)
    table.refresh()
    assert {day: len(files) for day, files in files_by_day(table).items()} == {today: 5}
    skipped = _evaluate(instance)
    assert isinstance(skipped, dg.SkipReason) and "no raw day partition is due" in (skipped.skip_message or "")

    # Ten: due. The sensor names the table and day; while a compaction run is in flight it waits for it.
    produce_events(settings, events[5 * BATCH : 10 * BATCH])
    _land_all(settings)
    request = _evaluate(instance)
    assert isinstance(request, dg.RunRequest)
    assert request.tags["platform/compact"] == f"raw.user_visit {today}"
    job = platform_definitions().resolve_job_def(COMPACT_JOB)
    queued = instance.create_run_for_job(job)
    waiting = _evaluate(instance)
    assert isinstance(waiting, dg.SkipReason) and "in progress" in (waiting.skip_message or "")
    instance.delete_run(queued.run_id)

    # The requested run compacts today while four more batches land.
    produce_events(settings, events[10 * BATCH :])
    outcome: list[bool] = []
    compaction = threading.Thread(
        target=lambda: outcome.append(job.execute_in_process(instance=instance, tags=request.tags).success)
    )
    compaction.start()
    try:
        _land_all(settings)
    finally:
        compaction.join()
    assert outcome == [True]

    table.refresh()
    rows = table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()
    assert sorted(rows) == sorted(e["event_id"] for e in events)  # every event exactly once
    # The ten files became one; the batches that landed alongside are the rest (some may have been taken too).
    assert len(files_by_day(table)[today]) <= 1 + 4
    assert isinstance(_evaluate(instance), dg.SkipReason)
