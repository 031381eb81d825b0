"""The live follower in Dagster: a long-lived run that keeps the per-minute facts current, and the
sensor that relaunches it (see :mod:`analytics_platform.warehouse.live` for what a refresh does).

A follower run first evaluates the raw tables' blocking checks, once (every refresh re-running them
would cost more than the refresh): if one fails, it publishes nothing. Within its ``follow_s`` it then
refreshes every ``marts_live_interval_s``, or less often when refreshes take long (``pause_after``).
"""

import functools
import time
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from pydantic import Field

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.runs import (
    IN_FLIGHT,
    SENSOR_INTERVAL_S,
    handover_from,
    last_run_failed_terminally,
    wait_for_run_to_end,
)
from analytics_platform.defs.serving.metrics_latest import METRICS_LATEST
from analytics_platform.defs.transform.project import dbt_manifest
from analytics_platform.defs.transform.published import PublishedMartsResource
from analytics_platform.defs.transform.translator import PlatformDbtTranslator
from analytics_platform.defs.workloads import LIVE
from analytics_platform.exceptions import DeliveryError, QualityGateError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.quality.checks import CHECKS
from analytics_platform.serving.metrics_topic import MetricsPublisher
from analytics_platform.settings import Settings
from analytics_platform.warehouse.live import (
    LIVE_TAG,
    days_between,
    live_facts_behind,
    pause_after,
    refresh_live_facts,
)

LIVE_JOB = "follow_live_facts"
LIVE_OP = "refresh_live_facts"


@functools.cache
def live_model_keys() -> tuple[dg.AssetKey, ...]:
    """Asset keys of the dbt models tagged ``live``."""
    translator = PlatformDbtTranslator()
    return tuple(
        translator.get_asset_key(node)
        for node in dbt_manifest()["nodes"].values()
        if node["resource_type"] == "model" and LIVE_TAG in node["tags"]
    )


def check_raw_tables(settings: Settings, log: dg.DagsterLogManager) -> None:
    """Evaluate every blocking raw check; raise QualityGateError naming those that fail."""
    catalog = load_catalog(settings)
    failed = []
    for event_type in event_types().values():
        for check in CHECKS:
            if check.blocking:
                outcome = check.run(catalog, settings, event_type)
                if not outcome.passed:
                    failed.append(f"raw/{event_type.name} {check.name}: {outcome.description}")
    if failed:
        raise QualityGateError(
            "the live facts were not refreshed because raw quality checks failed (the published marts are "
            "unchanged):\n  " + "\n  ".join(failed) + "\nInspect them with `analytics-platform dead-letters list`."
        )
    log.info("raw quality checks passed")


class FollowConfig(dg.Config):
    follow_s: float = Field(
        default=0.0,
        description="Keep refreshing the live facts for this many seconds (PLATFORM_MARTS_FOLLOW_S for sensor "
        "runs); 0: refresh once.",
    )
    after_run: str = Field(
        default="", description="Start only once this run (the follower this one takes over from) ended."
    )


@dg.op(name=LIVE_OP, retry_policy=TRANSIENT_RETRY)
def follow_live_facts_op(
    context: dg.OpExecutionContext,
    config: FollowConfig,
    dbt: DbtCliResource,
    platform: PlatformResource,
    marts: PublishedMartsResource,
) -> None:
    """Refresh the live facts every ``marts_live_interval_s`` (or less often, ``pause_after``) for
    ``follow_s``; each refresh is a materialization of the live models' touched partitions, and sends the
    changed headline values to the metrics topic (a materialization of it)."""
    settings = platform.settings()
    metrics = MetricsPublisher(settings)

    def run_dbt(args: list[str], target: Path) -> None:
        dbt.cli(args, target_path=target).wait()

    with honest_failures(context):
        if config.after_run:
            wait_for_run_to_end(context.instance, config.after_run, context.log)
        check_raw_tables(settings, context.log)
        deadline = time.monotonic() + config.follow_s
        while True:
            started = time.monotonic()
            refresh = refresh_live_facts(run_dbt, settings, context.log)
            if refresh is not None and refresh.keys is not None:
                metadata: dict[str, dg.RawMetadataValue] = {
                    "seconds": round(time.monotonic() - started, 3),
                    "phases": dg.MetadataValue.json(refresh.seconds),
                }
                for key in live_model_keys():
                    for day in days_between(refresh.keys):
                        context.log_event(dg.AssetMaterialization(key, partition=day, metadata=metadata))
                publish_metrics(context, metrics, marts)
            wait = pause_after(settings, time.monotonic() - started)
            if time.monotonic() + wait >= deadline:
                return
            time.sleep(wait)


def publish_metrics(context: dg.OpExecutionContext, metrics: MetricsPublisher, marts: PublishedMartsResource) -> None:
    """Send the refreshed headline values; if Kafka does not take them, the next refresh sends them."""
    try:
        with marts.published() as published:
            sent = metrics.publish(published.connection, published.build_id, published.path)
    except DeliveryError as error:
        context.log.warning(str(error))
        return
    context.log_event(
        dg.AssetMaterialization(
            METRICS_LATEST, metadata={"sent": sent, "build": published.build_id, "topic": metrics.topic}
        )
    )


@dg.job(
    name=LIVE_JOB,
    executor_def=dg.in_process_executor,
    tags=LIVE.tags(),
    description="Keep the live facts (dbt tag `live`: the per-minute marts) at the latest raw snapshots, "
    "every few seconds between full marts builds.",
)
def follow_live_facts_job() -> None:
    follow_live_facts_op()


def follow_run_config(follow_s: float, after_run: str = "") -> dict[str, object]:
    return {"ops": {LIVE_OP: {"config": {"follow_s": follow_s, "after_run": after_run}}}}


@dg.sensor(
    name="live_facts_sensor",
    job=follow_live_facts_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the live follower whenever the published live facts are behind the raw tables "
    "and no follower is running (also after one died), and its successor shortly before a follower is due "
    "to end.",
)
def live_facts_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    settings = platform.settings()
    in_flight = context.instance.get_run_records(dg.RunsFilter(job_name=LIVE_JOB, statuses=IN_FLIGHT), limit=2)
    if predecessor := handover_from(in_flight, settings.marts_follow_s, time.time()):
        run_config = follow_run_config(settings.marts_follow_s, after_run=predecessor)
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"after:{predecessor}", run_config=run_config)])
    if in_flight:
        return dg.SensorResult(skip_reason="the live follower is running")
    if failed := last_run_failed_terminally(context.instance, LIVE_JOB):
        return dg.SensorResult(
            skip_reason=f"the last follower, run {failed.run_id}, failed with an error retrying cannot fix; see its "
            "log, fix the cause and re-execute it from the Dagster UI"
        )
    if not live_facts_behind(settings):
        return dg.SensorResult(skip_reason="no full marts build has published live facts yet, or they are current")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_config=follow_run_config(settings.marts_follow_s))])
