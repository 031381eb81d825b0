"""Dagster-native alerts on a real instance: a failed run and a stale asset reach the webhook as Slack text.

The freshness checks are the platform's (built by ``defs/operations/checks.py``), with a window of
seconds so an asset goes stale while the test waits; the windows the platform ships are asserted on the
code location itself.
"""

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.operations.checks import FRESHNESS_CHECKS_SENSOR, freshness_checks
from analytics_platform.defs.operations.sensors import (
    FRESHNESS_ALERT_SENSOR,
    RUN_FAILURE_ALERT_SENSOR,
    build_freshness_alert_sensor,
    run_failure_alert_sensor,
)
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import honest_failures
from analytics_platform.exceptions import ConfigError
from analytics_platform.local.instance import get_instance
from analytics_platform.operations.doctor import expected_sensors
from analytics_platform.settings import get_settings
from tests.helpers import wait_for
from tests.operations.webhook import Receiver, receiving

pytestmark = pytest.mark.integration

STALE, FRESH = dg.AssetKey(["raw", "purchase"]), dg.AssetKey(["raw", "checkout"])
WINDOW_S = 2.0


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with receiving() as receiver:
        monkeypatch.setenv("PLATFORM_ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("PLATFORM_DAGSTER_UI_URL", "http://dagster.example:3000")
        yield receiver


@dg.op
def land_with_a_wrong_setting(context: dg.OpExecutionContext) -> None:
    with honest_failures(context):
        raise ConfigError("PLATFORM_BATCH_MAX_EVENTS=0 is not a batch size; set it to 1 or more")


@dg.job(name="ingest_broken")
def ingest_broken() -> None:
    land_with_a_wrong_setting()


def test_a_failed_run_reaches_the_webhook(webhook: Receiver, isolated_platform: Path) -> None:
    instance = get_instance(get_settings())
    result = ingest_broken.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)  # with the terminal-failure tag the op added
    assert run is not None
    with dg.build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_ALERT_SENSOR,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run,
        resources={"platform": PlatformResource()},
    ) as context:
        run_failure_alert_sensor(context)
    assert webhook.payloads == [
        {
            "text": f":red_circle: [FIRING] Dagster run failed: ingest_broken ({result.run_id[:8]})\n"
            "land_with_a_wrong_setting: ConfigError: PLATFORM_BATCH_MAX_EVENTS=0 is not a batch size; set it to 1 "
            "or more\n"
            "It failed terminally: nothing requests this work again until a person acts (the error says how).\n"
            f"<http://dagster.example:3000/runs/{result.run_id}|open in Dagster> · "
            "runbook: docs/runbooks.md#ingest-runs-failing"
        }
    ]


def evaluate_checks(instance: dg.DagsterInstance, checks: list[dg.AssetChecksDefinition]) -> dict[str, bool]:
    """Run the checks as their sensor's runs do; returns asset -> passed."""
    definitions = dg.Definitions(
        assets=[dg.AssetSpec(STALE), dg.AssetSpec(FRESH)],
        asset_checks=checks,
        jobs=[dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*checks))],
    )
    result = definitions.resolve_job_def("freshness").execute_in_process(instance=instance)
    return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}


def alert_tick(instance: dg.DagsterInstance, sensor: dg.SensorDefinition, cursor: str | None) -> str | None:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"platform": PlatformResource()}
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result.cursor


def test_a_stale_asset_fails_its_freshness_check_and_the_alert_fires_then_resolves(
    webhook: Receiver, isolated_platform: Path
) -> None:
    instance = get_instance(get_settings())
    # raw/purchase gets a window of seconds, to go stale while the test waits; raw/checkout stays fresh.
    checks = freshness_checks({STALE: WINDOW_S, FRESH: 60.0})
    sensor = build_freshness_alert_sensor({STALE: WINDOW_S, FRESH: 60.0}, checks)
    instance.report_runless_asset_event(dg.AssetMaterialization(STALE))
    stale_since = time.time()
    instance.report_runless_asset_event(dg.AssetMaterialization(FRESH))
    wait_for(lambda: time.time() - stale_since > WINDOW_S, 10, "raw/purchase to be older than its window", 0.1)

    assert evaluate_checks(instance, checks) == {"raw/purchase": False, "raw/checkout": True}
    cursor = alert_tick(instance, sensor, None)
    [fired] = webhook.payloads
    assert fired["text"].startswith(":red_circle: [FIRING] raw/purchase is stale\nfreshness check: Asset is overdue")
    assert fired["text"].endswith(
        "<http://dagster.example:3000/assets/raw/purchase|open in Dagster> · runbook: docs/runbooks.md#raw-freshness"
    )
    assert alert_tick(instance, sensor, cursor) == cursor and len(webhook.payloads) == 1  # not repeated

    # It lands again: its next check passes (a minute's window now, so the test's pace does not matter).
    instance.report_runless_asset_event(dg.AssetMaterialization(STALE))
    assert evaluate_checks(instance, freshness_checks({STALE: 60.0, FRESH: 60.0})) == {
        "raw/purchase": True,
        "raw/checkout": True,
    }
    assert alert_tick(instance, sensor, cursor) == "{}"
    assert len(webhook.payloads) == 2
    assert webhook.payloads[1]["text"].startswith(":large_green_circle: [RESOLVED] raw/purchase is fresh again\n")


def test_a_failed_freshness_policy_alerts(webhook: Receiver, isolated_platform: Path) -> None:
    """The state the freshness daemon records when a policy fails is read and alerted on as the checks are."""
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    instance = get_instance(get_settings())
    sensor = build_freshness_alert_sensor({STALE: 300.0}, [])
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=STALE,
            previous_state=FreshnessState.PASS,
            new_state=FreshnessState.FAIL,
            state_change_timestamp=time.time(),
        )
    )
    alert_tick(instance, sensor, None)
    assert [payload["text"].splitlines()[:2] for payload in webhook.payloads] == [
        [
            ":red_circle: [FIRING] raw/purchase is stale",
            "no materialization for over 5 min (its freshness policy failed)",
        ]
    ]


def test_the_code_location_carries_the_freshness_objectives() -> None:
    """Raw event streams and marts have policies and checks with the default objectives; reference data none."""
    definitions = platform_definitions()
    graph = definitions.resolve_asset_graph()

    def window(path: str) -> timedelta | None:
        policy = graph.get(dg.AssetKey(path.split("/"))).freshness_policy
        return policy.fail_window.to_timedelta() if policy is not None else None  # type: ignore[attr-defined]

    assert window("raw/purchase") == timedelta(minutes=5)
    assert window("raw/product_changed") is None
    assert window("raw/app_error") is None  # no errors for 5 minutes is good news
    assert window("marts/fct_events_per_minute") == timedelta(minutes=5)  # live facts
    assert window("marts/fct_daily_active_users") == timedelta(minutes=15)  # 3 x the 300 s refresh interval
    assert window("staging/stg_purchases") is None
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys if key.name == "freshness_check"}
    with_policy = {node.key.to_user_string() for node in graph.asset_nodes if node.freshness_policy is not None}
    assert checked == with_policy and "raw/purchase" in checked and "marts/fct_sessions" in checked
    sensors = {sensor.name: sensor for sensor in definitions.sensors or []}
    assert {FRESHNESS_CHECKS_SENSOR, FRESHNESS_ALERT_SENSOR, RUN_FAILURE_ALERT_SENSOR} <= set(sensors)
    running = sorted(
        name
        for name, sensor in sensors.items()
        if isinstance(sensor, dg.SensorDefinition) and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    )
    assert running == expected_sensors()  # what `analytics-platform doctor` expects to tick
