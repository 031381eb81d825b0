"""A following run's successor starts before it ends and takes over when it does: no launch gap."""

from __future__ import annotations

import threading

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.live import LIVE_JOB, live_facts_sensor
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings
from tests.helpers import counts_by_type, event_ids, produce, wait_for

pytestmark = pytest.mark.integration

PURCHASE = event_types()["purchase"]


def evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources={"platform": PlatformResource()}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_an_ingest_followers_successor_waits_for_it_then_lands_from_the_stored_offsets(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_INGEST_FOLLOW_S", "30")  # a following run due to end within HANDOFF_S
    instance = get_instance(broker)
    job = platform_definitions().resolve_job_def(f"ingest_{PURCHASE.name}")
    sensor = platform_definitions().resolve_sensor_def(f"ingest_{PURCHASE.name}_sensor")
    predecessor = instance.create_run_for_job(job)  # queued: in flight
    events = produce(broker, 600, seed=3)

    result = evaluate(sensor, instance)
    assert len(result.run_requests or []) == 1
    request = (result.run_requests or [])[0]
    op_config = request.run_config["ops"][raw_asset_key(PURCHASE).to_python_identifier()]["config"]
    assert request.run_key == f"{PURCHASE.topic}|after:{predecessor.run_id}"
    assert op_config == {"ranges": "", "follow_s": 30.0, "after_run": predecessor.run_id}

    op_config["follow_s"] = 0.0  # land and return, so the test can join it
    outcome: list[bool] = []
    successor = threading.Thread(
        target=lambda: outcome.append(job.execute_in_process(run_config=request.run_config, instance=instance).success)
    )
    successor.start()

    def waiting() -> bool:
        started = instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=[dg.DagsterRunStatus.STARTED]))
        return any(
            "taking over from run" in (entry.user_message or "")
            for record in started
            for entry in instance.all_logs(record.dagster_run.run_id)
        )

    wait_for(waiting, 60, "the successor to wait for its predecessor", poll_s=0.1)
    assert event_ids(broker, PURCHASE.name) == []  # nothing lands while the predecessor may still land
    instance.report_run_failed(predecessor)  # the predecessor ends
    successor.join(120)
    assert outcome == [True]
    landed = event_ids(broker, PURCHASE.name)
    assert len(landed) == len(set(landed)) == counts_by_type(events)[PURCHASE.name]


def test_a_live_followers_successor_is_requested_before_it_ends(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_MARTS_FOLLOW_S", "30")
    instance = get_instance(broker)
    predecessor = instance.create_run_for_job(platform_definitions().resolve_job_def(LIVE_JOB))
    result = evaluate(live_facts_sensor, instance)
    assert [request.run_key for request in result.run_requests or []] == [f"after:{predecessor.run_id}"]
    config = (result.run_requests or [])[0].run_config["ops"]["refresh_live_facts"]["config"]
    assert config == {"follow_s": 30.0, "after_run": predecessor.run_id}

    monkeypatch.setenv("PLATFORM_MARTS_FOLLOW_S", "600")  # far from its end: nothing to request yet
    assert not evaluate(live_facts_sensor, instance).run_requests
