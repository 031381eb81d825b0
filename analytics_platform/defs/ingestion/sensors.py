"""One sensor per topic: each tick plans the next bounded micro-batch and requests a run for it.

The run key is the batch's offset range, so a re-evaluated tick, or a second daemon, can never launch
the same batch twice. While a run of the topic is in flight the sensor waits: the next batch starts
where that one ends, which is known only once it commits. A following run is the exception: shortly
before it is due to end, its successor is launched, waits for it to end and goes on from the stored
offsets, so a steady stream never waits a run launch.
"""

import time
from collections.abc import Sequence

import dagster as dg

from analytics_platform.defs.ingestion.assets import IN_FLIGHT, ingest_run_config, raw_asset_key
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.events import EVENT_TYPES, EventType
from analytics_platform.ingest.batch import plan_next_run

SENSOR_INTERVAL_S = 5  # Dagster's floor; the default 30 s would dominate freshness
# A run launch costs ~15-20 s here: a following run's successor is requested this long before the
# following run is due to end, starts while it still lands, and takes over the moment it ends.
HANDOFF_S = 60.0


def handover_from(in_flight: Sequence[dg.RunRecord], follow_s: float, now: float) -> str | None:
    """The run a successor should take over from: the only run in flight, if it follows (``follow_s``)
    and is due to end within HANDOFF_S; None when no successor is due."""
    if len(in_flight) != 1 or follow_s <= 0:
        return None
    run = in_flight[0]
    return run.dagster_run.run_id if now >= run.create_timestamp.timestamp() + follow_s - HANDOFF_S else None


def ingest_job(event_type: EventType):  # -> the unresolved asset job dagster builds lazily
    return dg.define_asset_job(
        f"ingest_{event_type.name}",
        # Without the raw quality checks: they gate the marts, never ingestion (nothing may stop landing).
        selection=dg.AssetSelection.assets(raw_asset_key(event_type)).without_checks(),
        executor_def=dg.in_process_executor,  # one op per run: a subprocess per step only adds seconds
        tags={"dagster/max_retries": "3", "analytics_platform/topic": event_type.topic},
        description=f"Land one micro-batch of {event_type.topic} into raw.{event_type.name}.",
    )


def build_ingest_sensor(event_type: EventType, job) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"ingest_{event_type.name}_sensor",
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Launches a run for each new micro-batch of {event_type.topic}.",
    )
    def ingest_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
        settings = platform.settings()
        in_flight = context.instance.get_run_records(dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=2)
        if predecessor := handover_from(in_flight, settings.ingest_follow_s, time.time()):
            return dg.SensorResult(
                run_requests=[
                    dg.RunRequest(
                        run_key=f"{event_type.topic}|after:{predecessor}",
                        run_config=ingest_run_config(event_type, None, settings.ingest_follow_s, predecessor),
                    )
                ]
            )
        if in_flight:
            return dg.SensorResult(skip_reason=f"run {in_flight[0].dagster_run.run_id} is landing {event_type.topic}")
        plan = plan_next_run(settings, event_type.topic)
        if plan is None:
            return dg.SensorResult(skip_reason=f"{event_type.topic} has nothing new")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=plan.run_key,
                    run_config=ingest_run_config(event_type, plan, follow_s=settings.ingest_follow_s),
                    tags={"analytics_platform/events": str(plan.size)},
                )
            ]
        )

    return ingest_sensor


ingest_jobs = {name: ingest_job(event_type) for name, event_type in EVENT_TYPES.items()}
ingest_sensors = [build_ingest_sensor(EVENT_TYPES[name], job) for name, job in ingest_jobs.items()]
