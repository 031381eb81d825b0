"""The sensors that alert through one channel (:mod:`analytics_platform.operations.notify`): a webhook, or the log.

- ``run_failure_alert_sensor``: every failed run of the code location, with its error and whether the
  platform requests the work again by itself;
- ``freshness_alert_sensor``: a raw table or mart whose freshness policy failed (the daemon evaluates the
  policies) or whose latest freshness check failed, and again when it is fresh.

If the webhook does not take an alert, the tick fails and keeps its cursor, so the next tick sends it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import dagster as dg

from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import TERMINAL_TAG
from analytics_platform.operations.notify import freshness_changes, notify, run_failed
from analytics_platform.settings import Settings

RUN_FAILURE_ALERT_SENSOR = "run_failure_alert_sensor"
FRESHNESS_ALERT_SENSOR = "freshness_alert_sensor"
FRESHNESS_ALERT_INTERVAL_S = 30  # the daemon evaluates freshness policies every 30 s
LAST_UPDATED_KEY = "dagster/last_updated_timestamp"  # on a freshness check result, once the asset had an update


def failure_message(context: dg.RunFailureSensorContext) -> str:
    """What the failed steps said (a terminal error's message says how to go on); else the run's failure."""
    messages = []
    for event in context.get_step_failure_events():
        failure = event.step_failure_data
        if failure.user_failure_data is not None and failure.user_failure_data.description:
            messages.append(f"{event.step_key}: {failure.user_failure_data.description.strip()}")
        elif failure.error is not None:
            messages.append(f"{event.step_key}: {failure.error.message.strip()}")
    return "\n".join(messages) or context.failure_event.message or ""


@dg.run_failure_sensor(
    name=RUN_FAILURE_ALERT_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert (PLATFORM_ALERT_WEBHOOK_URL, else the log) for every failed run of this code "
    "location, with its error and whether its sensor requests the work again.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, platform: PlatformResource) -> None:
    run = context.dagster_run
    alert = run_failed(
        platform.settings(),
        run.job_name,
        run.run_id,
        failure_message(context),
        terminal=TERMINAL_TAG in run.tags,
    )
    notify(platform.settings(), alert, context.log)


def _seconds(window: float) -> str:
    return f"{window / 60:g} min" if window >= 60 else f"{window:g} s"


def stale_assets(
    instance: dg.DagsterInstance, windows: Mapping[dg.AssetKey, float], check_keys: Sequence[dg.AssetCheckKey]
) -> dict[str, str]:
    """Assets past their freshness objective now, and why: the freshness policy's state as the daemon last
    evaluated it (FAIL), or the latest freshness check result (failed, and no materialization since; an asset
    that never had one is unknown, as for the policy, not stale)."""
    stale = {}
    for key, state in instance.get_freshness_state_records(list(windows)).items():
        if state.freshness_state == "FAIL":  # FreshnessState is a str enum
            stale[key.to_user_string()] = (
                f"no materialization for over {_seconds(windows[key])} (its freshness policy failed)"
            )
    summaries = instance.event_log_storage.get_asset_check_summary_records(list(check_keys))
    for check_key, summary in summaries.items():
        record = summary.last_completed_check_execution_record
        evaluation = record.event.asset_check_evaluation if record is not None and record.event else None
        if evaluation is None or evaluation.passed or LAST_UPDATED_KEY not in evaluation.metadata:
            continue
        landed = instance.get_latest_materialization_event(check_key.asset_key)
        if record is not None and record.event is not None and landed and landed.timestamp > record.event.timestamp:
            continue  # it materialized since the check failed: stale no more, whenever the check runs again
        stale.setdefault(check_key.asset_key.to_user_string(), f"freshness check: {evaluation.description}")
    return stale


def runbook_for_asset(asset: str) -> str:
    return "raw-freshness" if asset.startswith("raw/") else "mart-freshness"


def build_freshness_alert_sensor(
    windows: Mapping[dg.AssetKey, float], checks: Sequence[dg.AssetChecksDefinition]
) -> dg.SensorDefinition:
    """The sensor that alerts when an asset of ``windows`` (asset -> objective in seconds) goes stale, and
    when it is fresh again. Its cursor is the stale assets it has alerted on."""
    check_keys = [spec.key for check in checks for spec in check.check_specs]

    @dg.sensor(
        name=FRESHNESS_ALERT_SENSOR,
        minimum_interval_seconds=FRESHNESS_ALERT_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends an alert (PLATFORM_ALERT_WEBHOOK_URL, else the log) when a raw table or mart goes "
        "past its freshness objective (its freshness policy or check failed), and when it is fresh again.",
    )
    def freshness_alert_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        settings: Settings = platform.settings()
        stale = stale_assets(context.instance, windows, check_keys)
        previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        runbooks = {asset: runbook_for_asset(asset) for asset in {*stale, *previous}}
        alerts = freshness_changes(previous, stale, settings, runbooks)
        for alert in alerts:
            notify(settings, alert, context.log)
        summary = f"{len(stale)} stale: {', '.join(sorted(stale))}" if stale else "every asset is fresh"
        return dg.SensorResult(skip_reason=f"{summary}; {len(alerts)} alert(s) sent", cursor=json.dumps(stale))

    return freshness_alert_sensor
