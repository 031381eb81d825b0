"""One sensor per topic: each tick plans the next bounded range and requests a run for it.

The run key is the range, so a re-evaluated tick, or a second daemon, never launches the same range
twice; if that run dies or fails, the range is requested again with an attempt number (see
:mod:`analytics_platform.defs.runs`). While a run of the topic is in flight the sensor waits: the
next range starts where that one ends, which is known only once it commits. A following run is the
exception: shortly before it is due to end, its successor is launched, waits for it to end and goes
on from the stored offsets, so a steady stream never waits a run launch.

With ``PLATFORM_INGEST_WORKERS_PER_TOPIC`` above 1, the same sensor does all of this once per partition
group of the topic, each group on its own: its in-flight runs are those tagged with its lane
(``INGEST_LANE_TAG``), its ranges and so its run keys cover only its partitions, and its successors
follow only them. One sensor per topic rather than one per group keeps the sensor names (and what
``doctor``, the runbooks and deployments know) whatever the setting, and needs no Dagster cursor: a
group's state is its partitions' offsets in Iceberg and its runs, both read on each tick.
"""

import time

import dagster as dg

from analytics_platform.contracts.envelope import EventType
from analytics_platform.defs.ingestion.jobs import (
    INGEST_LANE_TAG,
    ingest_job_name,
    ingest_lane,
    ingest_run_config,
    ingest_run_tags,
)
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import (
    IN_FLIGHT,
    SENSOR_INTERVAL_S,
    WORK_TAG,
    earlier_runs,
    handover_from,
    next_attempt,
)
from analytics_platform.ingest.plan import WHOLE_TOPIC, PartitionGroup, partition_groups, plan_next_run
from analytics_platform.settings import Settings

EVENTS_TAG = "analytics_platform/events"


def _group_tick(
    context: dg.SensorEvaluationContext, settings: Settings, event_type: EventType, group: PartitionGroup
) -> dg.RunRequest | str:
    """The run to request for ``group`` of the topic now, or why none."""
    job_name = ingest_job_name(event_type)
    lane = ingest_lane(event_type.topic, group)
    # The whole topic counts every run of its job in flight (as before groups); a group only its own.
    tags = {} if group == WHOLE_TOPIC else {INGEST_LANE_TAG: lane}
    in_flight = context.instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT, tags=tags), limit=2
    )
    run_tags = ingest_run_tags(event_type, group)
    if predecessor := handover_from(in_flight, settings.ingest_follow_s, time.time()):
        run_config = ingest_run_config(event_type, None, settings.ingest_follow_s, predecessor, group)
        return dg.RunRequest(run_key=f"{event_type.topic}|after:{predecessor}", run_config=run_config, tags=run_tags)
    if in_flight:
        return f"run {in_flight[0].dagster_run.run_id} is landing {lane}"
    plan = plan_next_run(settings, event_type.topic, group=group)
    if plan is None:
        return f"{lane} has nothing new"
    attempt = next_attempt(plan.run_key, earlier_runs(context.instance, plan.run_key))
    if attempt.run_key is None:
        return attempt.skip_reason or f"{lane}: nothing to request"
    return dg.RunRequest(
        run_key=attempt.run_key,
        run_config=ingest_run_config(event_type, plan, follow_s=settings.ingest_follow_s, group=group),
        tags={EVENTS_TAG: str(plan.size), WORK_TAG: plan.run_key} | run_tags,
    )


def build_ingest_sensor(event_type: EventType) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"ingest_{event_type.name}_sensor",
        job_name=ingest_job_name(event_type),
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Launches a run for each new range of {event_type.topic} (of each partition group, with "
        "PLATFORM_INGEST_WORKERS_PER_TOPIC above 1), and again for a range whose run died or failed.",
    )
    def ingest_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        settings = platform.settings()
        groups = partition_groups(settings.ingest_workers_per_topic)
        outcomes = [_group_tick(context, settings, event_type, group) for group in groups]
        requests = [outcome for outcome in outcomes if isinstance(outcome, dg.RunRequest)]
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SensorResult(skip_reason="; ".join(str(outcome) for outcome in outcomes))

    return ingest_sensor
