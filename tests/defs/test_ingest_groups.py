"""The ingest sensor with PLATFORM_INGEST_WORKERS_PER_TOPIC above 1: one request per partition group, each
with its own range, run key and queue lane; a group's run in flight holds only that group; the runs land
every event once. Real broker, Iceberg and Dagster instance; runs execute in process."""

from __future__ import annotations

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import ingestion_only
from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.ingestion.jobs import INGEST_LANE_TAG, TOPIC_TAG, ingest_job_name
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import WORK_TAG
from analytics_platform.ingest.plan import BatchPlan
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings
from tests.helpers import counts_by_type, event_ids, produce

pytestmark = pytest.mark.integration

PURCHASE = event_types()["purchase"]
OP = raw_asset_key(PURCHASE).to_python_identifier()


def tick(instance: dg.DagsterInstance) -> dg.SensorResult:
    sensor = ingestion_only().resolve_sensor_def(f"ingest_{PURCHASE.name}_sensor")  # the name does not change
    with dg.build_sensor_context(instance=instance, resources={"platform": PlatformResource()}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_each_partition_group_gets_its_own_range_run_key_and_lane(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_INGEST_WORKERS_PER_TOPIC", "2")
    monkeypatch.setenv("PLATFORM_INGEST_FOLLOW_S", "0")
    assert broker.topic_partitions == 3  # group 0/2: partitions 0 and 2; group 1/2: partition 1
    produced = produce(broker, 2_000, seed=4)
    instance = get_instance(broker)

    requests = tick(instance).run_requests or []
    lanes = [request.tags[INGEST_LANE_TAG] for request in requests]
    assert lanes == [f"{PURCHASE.topic}:0/2", f"{PURCHASE.topic}:1/2"]
    plans = [
        BatchPlan.from_config({"topic": PURCHASE.topic, "ranges": r.run_config["ops"][OP]["config"]["ranges"]})
        for r in requests
    ]
    assert [sorted(plan.ranges) for plan in plans] == [[0, 2], [1]]
    assert [request.run_key for request in requests] == [plan.run_key for plan in plans]
    assert [request.tags[WORK_TAG] for request in requests] == [plan.run_key for plan in plans]
    assert [{k: r.run_config["ops"][OP]["config"][k] for k in ("group", "groups")} for r in requests] == [
        {"group": 0, "groups": 2},
        {"group": 1, "groups": 2},
    ]

    # Group 1's run is in flight (queued): group 1 waits, group 0 is not held by it.
    job = ingestion_only().resolve_job_def(ingest_job_name(PURCHASE))
    tags = {**job.tags, **requests[1].tags}  # as the daemon merges them: the request's over the job's
    assert tags[INGEST_LANE_TAG] == f"{PURCHASE.topic}:1/2" and job.tags[INGEST_LANE_TAG] == PURCHASE.topic
    assert tags[TOPIC_TAG] == PURCHASE.topic
    queued = instance.create_run_for_job(job, run_config=requests[1].run_config, tags=tags)
    held = tick(instance)
    assert [request.tags[INGEST_LANE_TAG] for request in held.run_requests or []] == [f"{PURCHASE.topic}:0/2"]
    instance.report_run_failed(queued)

    for request in requests:
        tags = {**request.tags, "dagster/run_key": request.run_key or ""}
        assert job.execute_in_process(run_config=request.run_config, instance=instance, tags=tags).success
    ids = event_ids(broker, PURCHASE.name)
    assert len(ids) == len(set(ids)) == counts_by_type(produced)[PURCHASE.name]

    caught_up = tick(instance)
    assert not caught_up.run_requests
    skip = caught_up.skip_reason.skip_message if caught_up.skip_reason else ""
    assert f"{PURCHASE.topic}:0/2 has nothing new" in skip and f"{PURCHASE.topic}:1/2 has nothing new" in skip


def test_one_group_requests_what_it_always_did(broker: Settings) -> None:
    """The default: one request for the whole topic, with the config, tags and run key of before groups."""
    produce(broker, 500, seed=5)
    [request] = tick(get_instance(broker)).run_requests or []
    assert set(request.run_config["ops"][OP]["config"]) == {"ranges", "follow_s", "after_run"}
    assert INGEST_LANE_TAG not in request.tags  # the job's own tag: the topic
    plan = BatchPlan.from_config({"topic": PURCHASE.topic, "ranges": request.run_config["ops"][OP]["config"]["ranges"]})
    assert sorted(plan.ranges) == [0, 1, 2] and request.run_key == plan.run_key
