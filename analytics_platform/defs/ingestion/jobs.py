"""One ingest job per topic, and the run config that makes it land a planned range (of a partition group)."""

import dagster as dg

from analytics_platform.contracts.envelope import EventType
from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.workloads import INGEST
from analytics_platform.ingest.plan import WHOLE_TOPIC, BatchPlan, PartitionGroup

TOPIC_TAG = "analytics_platform/topic"
# What the run queue limits ingestion by (docker/dagster.yaml): a run landing the whole topic carries the
# topic, a run of one partition group (PLATFORM_INGEST_WORKERS_PER_TOPIC above 1) the topic and its group,
# so each group gets the two runs a topic gets (one landing, one successor waiting to take over).
INGEST_LANE_TAG = "analytics_platform/ingest_lane"


def ingest_lane(topic: str, group: PartitionGroup = WHOLE_TOPIC) -> str:
    return topic if group == WHOLE_TOPIC else f"{topic}:{group.label}"


def ingest_job_name(event_type: EventType) -> str:
    return f"ingest_{event_type.name}"


def ingest_job(event_type: EventType):  # -> an unresolved asset job (its class is not public)
    return dg.define_asset_job(
        ingest_job_name(event_type),
        # Without the raw quality checks: they gate the marts, never ingestion (nothing may stop landing).
        selection=dg.AssetSelection.assets(raw_asset_key(event_type)).without_checks(),
        executor_def=dg.in_process_executor,  # one op per run: a subprocess per step only adds seconds
        # No run retries: when a run dies, the topic's sensor plans again from the offsets stored in
        # Iceberg (a retry would replay a stale plan); transient errors are retried by the op itself.
        tags={TOPIC_TAG: event_type.topic, INGEST_LANE_TAG: ingest_lane(event_type.topic)} | INGEST.tags(),
        description=f"Land one micro-batch of {event_type.topic} into raw.{event_type.name}.",
    )


def ingest_run_config(
    event_type: EventType,
    plan: BatchPlan | None,
    follow_s: float = 0.0,
    after_run: str = "",
    group: PartitionGroup = WHOLE_TOPIC,
) -> dict[str, object]:
    """Run config that makes the raw asset land ``plan`` (None: plan when it starts, after ``after_run``
    ended) and then follow the topic, or only ``group``'s partitions of it, for ``follow_s``."""
    op_name = raw_asset_key(event_type).to_python_identifier()
    ranges = plan.to_config()["ranges"] if plan else ""
    config: dict[str, object] = {"ranges": ranges, "follow_s": follow_s, "after_run": after_run}
    if group != WHOLE_TOPIC:  # the whole topic's config stays as it was before groups
        config |= {"group": group.index, "groups": group.count}
    return {"ops": {op_name: {"config": config}}}


def ingest_run_tags(event_type: EventType, group: PartitionGroup) -> dict[str, str]:
    """Tags a sensor's run of ``group`` adds to the job's: its lane, for the run queue and the sensor."""
    return {} if group == WHOLE_TOPIC else {INGEST_LANE_TAG: ingest_lane(event_type.topic, group)}
