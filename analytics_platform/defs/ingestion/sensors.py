"""One sensor per topic: each tick plans the next bounded range and requests a run for it.

The run key is the range, so a re-evaluated tick, or a second daemon, never launches the same range
twice; if that run dies or fails, the range is requested again with an attempt number (see
:mod:`analytics_platform.defs.runs`). While a run of the topic is in flight the sensor waits: the
next range starts where that one ends, which is known only once it commits. A following run is the
exception: shortly before it is due to end, its successor is launched, waits for it to end and goes
on from the stored offsets, so a steady stream never waits a run launch.
"""

import time

import dagster as dg

from analytics_platform.contracts.envelope import EventType
from analytics_platform.defs.ingestion.jobs import ingest_job_name, ingest_run_config
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.runs import (
    IN_FLIGHT,
    SENSOR_INTERVAL_S,
    WORK_TAG,
    earlier_runs,
    handover_from,
    next_attempt,
)
from analytics_platform.ingest.plan import plan_next_run

EVENTS_TAG = "analytics_platform/events"


def build_ingest_sensor(event_type: EventType) -> dg.SensorDefinition:
    job_name = ingest_job_name(event_type)

    @dg.sensor(
        name=f"ingest_{event_type.name}_sensor",
        job_name=job_name,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Launches a run for each new range of {event_type.topic}, and again for a range whose "
        "run died or failed.",
    )
    def ingest_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        settings = platform.settings()
        in_flight = context.instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=2)
        if predecessor := handover_from(in_flight, settings.ingest_follow_s, time.time()):
            run_config = ingest_run_config(event_type, None, settings.ingest_follow_s, predecessor)
            request = dg.RunRequest(run_key=f"{event_type.topic}|after:{predecessor}", run_config=run_config)
            return dg.SensorResult(run_requests=[request])
        if in_flight:
            return dg.SensorResult(skip_reason=f"run {in_flight[0].dagster_run.run_id} is landing {event_type.topic}")
        plan = plan_next_run(settings, event_type.topic)
        if plan is None:
            return dg.SensorResult(skip_reason=f"{event_type.topic} has nothing new")
        attempt = next_attempt(plan.run_key, earlier_runs(context.instance, plan.run_key))
        if attempt.run_key is None:
            return dg.SensorResult(skip_reason=attempt.skip_reason)
        request = dg.RunRequest(
            run_key=attempt.run_key,
            run_config=ingest_run_config(event_type, plan, follow_s=settings.ingest_follow_s),
            tags={EVENTS_TAG: str(plan.size), WORK_TAG: plan.run_key},
        )
        return dg.SensorResult(run_requests=[request])

    return ingest_sensor
