"""Live facts: the per-minute marts brought up to the latest raw snapshots every few seconds.

A full marts build (``refresh_marts``) pays a run launch and a minute or more of dbt on a small machine,
so an event would wait minutes to show in ``fct_events_per_minute``. The models tagged ``live`` in dbt
(the per-minute facts, which read only views over raw and a seed) are cheap to recompute for the days
new rows touched. The live follower, one long-lived run that ``live_facts_sensor`` relaunches, does that
every ``marts_live_interval_s``: copy the published file, pin its raw views to the current snapshots,
``dbt run`` the live models over the touched days, publish.

Each build records the raw snapshots its live facts reflect (its live pins). The follower and full
builds publish under one lock, and a full build that finds a file published since it started brings
its live facts up to date first, so published live facts never go back in time.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from pydantic import Field

from analytics_platform import warehouse
from analytics_platform.defs.ingestion.assets import wait_for_run_to_end
from analytics_platform.defs.ingestion.sensors import IN_FLIGHT, SENSOR_INTERVAL_S, handover_from
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.project import dbt_pointed_at, dbt_project, dbt_target
from analytics_platform.defs.transform.sensors import partition_range, raw_snapshot_ids, touched_days
from analytics_platform.defs.transform.translator import PlatformDbtTranslator
from analytics_platform.ingest.lakehouse import load_catalog
from analytics_platform.settings import Settings

LIVE_TAG = "live"
LIVE_JOB = "follow_live_facts"
LIVE_SLOT = "live"


@cache
def live_model_keys() -> tuple[dg.AssetKey, ...]:
    """Asset keys of the dbt models tagged ``live``."""
    manifest = json.loads(dbt_project().manifest_path.read_text())
    translator = PlatformDbtTranslator()
    return tuple(
        translator.get_asset_key(node)
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and LIVE_TAG in node["tags"]
    )


def advance_live_pins(settings: Settings, build: Path, covered: tuple[str, str]) -> None:
    """After a daily build of the ``covered`` partitions: if every day touched since the build's live
    pins is among them, its live facts now reflect the snapshots its raw views read."""
    days = touched_days(settings, warehouse.read_pins(build, warehouse.LIVE_PINS) or {})
    keys = partition_range(days, datetime.now(UTC).date()) if days else None
    if keys is None or (covered[0] <= keys[0] and keys[1] <= covered[1]):
        warehouse.record_pins(build, warehouse.LIVE_PINS, warehouse.read_pins(build, warehouse.RAW_PINS) or {})


def catch_up_live_facts(
    dbt: DbtCliResource, settings: Settings, build: Path, log: dg.DagsterLogManager
) -> tuple[str, str] | None:
    """Pin the build's raw views to the current snapshots and rebuild its live facts over the days rows
    landed in since its live pins; returns those days as partition keys (None: no partition to rebuild)."""
    live = warehouse.read_pins(build, warehouse.LIVE_PINS) or {}
    now = warehouse.pin_raw_views(settings, load_catalog(settings), build)
    keys = None
    if now != live:
        # Computed after pinning, from the tables' current state: a superset of the days up to ``now``.
        days = touched_days(settings, live)
        keys = partition_range(days, datetime.now(UTC).date()) if days else None
    if keys is not None:
        log.info(f"rebuilding the live facts of {keys[0]} .. {keys[1]}")
        command = ["run", "--select", f"tag:{LIVE_TAG}"]
        with dbt_pointed_at(settings, build, LIVE_SLOT, keys):  # under the publish lock: one live run at a time
            dbt.cli(command, target_path=dbt_target(settings, LIVE_SLOT)).wait()
    warehouse.record_pins(build, warehouse.LIVE_PINS, now)
    return keys


@dataclass(frozen=True)
class LiveRefresh:
    keys: tuple[str, str] | None  # the partitions rebuilt (None: the new rows touched none)
    seconds: dict[str, float]  # per phase: waiting for the publish lock, copy and pin, dbt, publish


def live_facts_behind(settings: Settings) -> bool:
    """Whether marts are published and their live facts are behind the raw tables' current snapshots."""
    published = warehouse.current_build(settings)
    return published is not None and raw_snapshot_ids(settings) != (
        warehouse.read_pins(published, warehouse.LIVE_PINS) or {}
    )


def refresh_live_facts(dbt: DbtCliResource, settings: Settings, log: dg.DagsterLogManager) -> LiveRefresh | None:
    """One follower step: publish a build with live facts at the current raw snapshots, if they moved."""
    if not live_facts_behind(settings):
        return None
    clock = time.monotonic()
    seconds = {}

    def phase(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()

    with warehouse.publish_lock(settings):
        phase("lock")
        build = warehouse.prepare_build(settings, load_catalog(settings))
        phase("copy")
        try:
            keys = catch_up_live_facts(dbt, settings, build, log)
        except BaseException:
            warehouse.discard(build)
            raise
        phase("dbt")
        warehouse.publish(settings, build)
        phase("publish")
    return LiveRefresh(keys, seconds)


def _days(keys: tuple[str, str]) -> list[str]:
    first, last = date.fromisoformat(keys[0]), date.fromisoformat(keys[1])
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)]


class FollowConfig(dg.Config):
    follow_s: float = Field(
        default=0.0,
        description="Keep refreshing the live facts for this many seconds (PLATFORM_MARTS_FOLLOW_S for sensor "
        "runs); 0: refresh once.",
    )
    after_run: str = Field(
        default="", description="Start only once this run (the follower this one takes over from) ended."
    )


@dg.op(name="refresh_live_facts")
def follow_live_facts_op(
    context: dg.OpExecutionContext, config: FollowConfig, dbt: DbtCliResource, platform: PlatformResource
) -> None:
    """Refresh the live facts every ``marts_live_interval_s`` for ``follow_s``; each refresh is a
    materialization of the live models' touched partitions."""
    settings = platform.settings()
    if config.after_run:
        wait_for_run_to_end(context.instance, config.after_run, context.log)
    deadline = time.monotonic() + config.follow_s
    while True:
        started = time.monotonic()
        refresh = refresh_live_facts(dbt, settings, context.log)
        if refresh is not None and refresh.keys is not None:
            metadata: dict[str, dg.RawMetadataValue] = {
                "seconds": round(time.monotonic() - started, 3),
                "phases": dg.MetadataValue.json(refresh.seconds),
            }
            for key in live_model_keys():
                for day in _days(refresh.keys):
                    context.log_event(dg.AssetMaterialization(key, partition=day, metadata=metadata))
        wait = settings.marts_live_interval_s - (time.monotonic() - started)
        if time.monotonic() + max(wait, 0) >= deadline:
            return
        time.sleep(max(wait, 0))


@dg.job(
    name=LIVE_JOB,
    executor_def=dg.in_process_executor,
    description="Keep the live facts (dbt tag `live`: the per-minute marts) at the latest raw snapshots, "
    "every few seconds between full marts builds.",
)
def follow_live_facts_job() -> None:
    follow_live_facts_op()


@dg.sensor(
    name="live_facts_sensor",
    job=follow_live_facts_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the live follower whenever the published live facts are behind the raw tables "
    "and no follower is running, and its successor shortly before a follower is due to end.",
)
def live_facts_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    settings = platform.settings()
    in_flight = context.instance.get_run_records(dg.RunsFilter(job_name=LIVE_JOB, statuses=IN_FLIGHT), limit=2)
    if predecessor := handover_from(in_flight, settings.marts_follow_s, time.time()):
        run_config = _follow_run_config(settings.marts_follow_s, after_run=predecessor)
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"after:{predecessor}", run_config=run_config)])
    if in_flight:
        return dg.SensorResult(skip_reason="the live follower is running")
    if not live_facts_behind(settings):
        return dg.SensorResult(skip_reason="no marts published yet, or their live facts are current")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_config=_follow_run_config(settings.marts_follow_s))])


def _follow_run_config(follow_s: float, after_run: str = "") -> dict[str, object]:
    return {"ops": {"refresh_live_facts": {"config": {"follow_s": follow_s, "after_run": after_run}}}}
