"""One ingest job per topic, and the run config that makes it land a planned range."""

import dagster as dg

from analytics_platform.contracts.envelope import EventType
from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.workloads import INGEST
from analytics_platform.ingest.plan import BatchPlan

TOPIC_TAG = "analytics_platform/topic"


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
        tags={TOPIC_TAG: event_type.topic} | INGEST.tags(),
        description=f"Land one micro-batch of {event_type.topic} into raw.{event_type.name}.",
    )


def ingest_run_config(
    event_type: EventType, plan: BatchPlan | None, follow_s: float = 0.0, after_run: str = ""
) -> dict[str, object]:
    """Run config that makes the raw asset land ``plan`` (None: plan when it starts, after ``after_run``
    ended) and then follow the topic for ``follow_s``."""
    op_name = raw_asset_key(event_type).to_python_identifier()
    ranges = plan.to_config()["ranges"] if plan else ""
    return {"ops": {op_name: {"config": {"ranges": ranges, "follow_s": follow_s, "after_run": after_run}}}}
