"""An error retrying cannot fix is not retried, says how to go on, and holds the sensor until a person acts.

The case: the memory-only broker restarted, so its log holds different messages at the offsets Iceberg
recorded as landed (the fingerprint of the last landed message no longer matches).
"""

from __future__ import annotations

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import ingestion_only
from analytics_platform.defs.ingestion.jobs import ingest_job_name, ingest_run_config
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import TERMINAL_TAG, WORK_TAG
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.ingest.plan import plan_next_run
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.reader import log_bounds
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import reset_offsets
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings
from tests.helpers import counts_by_type, event_ids, produce

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PURCHASE = event_types()["purchase"]


def tick(instance: dg.DagsterInstance) -> dg.SensorResult:
    sensor = ingestion_only().resolve_sensor_def(f"ingest_{PURCHASE.name}_sensor")
    with dg.build_sensor_context(instance=instance, resources={"platform": PlatformResource()}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_a_replaced_kafka_log_fails_once_with_the_fix_and_holds_the_sensor(broker: Settings) -> None:
    produce(broker, 2_000, seed=1)
    ingest_until_caught_up(broker, PURCHASE.topic)
    landed_before = len(event_ids(broker, PURCHASE.name))

    embedded_broker.stop(broker)  # the memory-only broker loses its log ...
    embedded_broker.start(broker)
    create_topics(broker, broker.topic_partitions)
    later = produce(broker, 6_000, seed=2)  # ... and a new one grows past the stored offsets

    instance = get_instance(broker)
    request = (tick(instance).run_requests or [])[0]
    job = ingestion_only().resolve_job_def(ingest_job_name(PURCHASE))
    tags = {**request.tags, "dagster/run_key": request.run_key or ""}
    result = job.execute_in_process(run_config=request.run_config, instance=instance, tags=tags, raise_on_error=False)

    assert not result.success
    events = result.all_events
    assert not [e for e in events if e.event_type == dg.DagsterEventType.STEP_RESTARTED]  # not retried
    [failure] = [e for e in events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "OffsetMismatchError" in message and "holds a different message" in message
    assert f"analytics-platform offsets reset --topic {PURCHASE.topic}" in message  # how to go on
    assert instance.get_run_by_id(result.run_id).tags[TERMINAL_TAG] == "OffsetMismatchError"
    assert len(event_ids(broker, PURCHASE.name)) == landed_before  # nothing written

    held = tick(instance)  # the same range is not requested again
    assert not held.run_requests
    assert "retrying cannot fix" in (held.skip_reason.skip_message or "")

    # The fix the message names: continue from the new log (its rows landed before stay).
    table = ensure_raw_table(load_catalog(broker), broker, PURCHASE)
    starts = {p: b.start for p, b in log_bounds(broker, PURCHASE.topic).items()}
    reset_offsets(table, PURCHASE.topic, starts, reason="test: broker restarted")
    resumed = (tick(instance).run_requests or [])[0]
    assert resumed.tags[WORK_TAG] != request.tags[WORK_TAG]
    plan = plan_next_run(broker, PURCHASE.topic)
    assert plan is not None and plan.size == counts_by_type(later)[PURCHASE.name]
    again = job.execute_in_process(
        run_config=ingest_run_config(PURCHASE, plan), instance=instance, raise_on_error=False
    )
    assert again.success
    ids = event_ids(broker, PURCHASE.name)
    assert len(ids) == len(set(ids)) == landed_before + counts_by_type(later)[PURCHASE.name]
