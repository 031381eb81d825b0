"""Raw Iceberg tables as Dagster assets, one per Kafka topic, each downstream of its topic.

The asset function is thin: it lands the micro-batch the sensor planned (or plans one itself when
materialised by hand) through :mod:`analytics_platform.ingest`, the same code the CLI uses.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from analytics_platform.contracts.envelope import EventType, event_types
from analytics_platform.defs.operations.checks import raw_freshness_policy
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.runs import wait_for_run_to_end
from analytics_platform.ingest.land import BatchResult, land_run
from analytics_platform.ingest.plan import BatchPlan, PartitionGroup, plan_next_run
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE
from analytics_platform.operations.batches import LagProbe, batch_figures, run_figures
from analytics_platform.settings import get_settings

DEAD_LETTER_KEY = dg.AssetKey(["raw", DEAD_LETTER_TABLE])
STAGES = ("consume", "decode", "commit")


class IngestConfig(dg.Config):
    """Which micro-batch to land; left empty, the run plans the next batch itself."""

    ranges: str = Field(
        default="",
        description='JSON {"<partition>": [start, end]} (end exclusive) as planned by the sensor; '
        '"" plans the next batch.',
    )
    follow_s: float = Field(
        default=0.0,
        description="Then keep landing new messages for this many seconds (PLATFORM_INGEST_FOLLOW_S for sensor runs).",
    )
    after_run: str = Field(
        default="",
        description="Start only once this run (the topic's following run this one takes over from) has ended; "
        "then plan from the stored offsets.",
    )
    group: int = Field(
        default=0,
        ge=0,
        description="The partition group this run lands, of `groups`: partitions p with p mod groups == group "
        "(PLATFORM_INGEST_WORKERS_PER_TOPIC).",
    )
    groups: int = Field(default=1, ge=1, description="Partition groups of the topic; 1: the whole topic.")


def topic_asset_key(event_type: EventType) -> dg.AssetKey:
    return dg.AssetKey(["kafka", event_type.topic.replace(".", "_")])


def raw_asset_key(event_type: EventType) -> dg.AssetKey:
    return dg.AssetKey(["raw", event_type.name])


def topic_spec(event_type: EventType) -> dg.AssetSpec:
    return dg.AssetSpec(
        topic_asset_key(event_type),
        description=f"Kafka topic `{event_type.topic}`: {event_type.name} envelopes (producers key them by user_id).",
        group_name="kafka",
        kinds={"kafka"},
    )


def _batch_metadata(batch: BatchResult) -> dict[str, Any]:
    return {
        "rows_landed": batch.rows_landed,
        "dead_lettered": batch.dead_lettered,
        "keys_not_user_id": batch.keys_not_user_id,
        "snapshot_id": str(batch.snapshot_id),
        "seconds": dg.MetadataValue.json(batch.seconds),
    }


def build_raw_asset(event_type: EventType) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_asset_key(event_type),
        deps=[topic_asset_key(event_type)],
        group_name="raw",
        kinds={"iceberg", "python"},
        retry_policy=TRANSIENT_RETRY,
        freshness_policy=raw_freshness_policy(get_settings(), event_type.name),  # docs/runbooks.md#raw-freshness
        description=(
            f"Iceberg table `raw.{event_type.name}`: one row per message of `{event_type.topic}`, "
            "partitioned by day of event time; each snapshot records the Kafka offsets it landed."
        ),
    )
    def raw_events(
        context: dg.AssetExecutionContext, config: IngestConfig, platform: PlatformResource
    ) -> dg.MaterializeResult:
        settings = platform.settings()
        # The probe reads the topic's log end after each batch, for the lag shown with it (docs/operations.md#metrics).
        with honest_failures(context), LagProbe(settings, event_type.topic) as probe:
            group = PartitionGroup(config.group, config.groups)
            if config.after_run:
                wait_for_run_to_end(context.instance, config.after_run, context.log)
            plan = (
                BatchPlan.from_config({"topic": event_type.topic, "ranges": config.ranges})
                if config.ranges
                else plan_next_run(settings, event_type.topic, group=group)
            )
            if plan is None and config.follow_s:
                plan = BatchPlan(event_type.topic, {})  # nothing new yet: follow from the stored offsets
            if plan is None:
                return dg.MaterializeResult(metadata={"rows_landed": 0, "note": "caught up: nothing new in Kafka"})
            context.log.info(f"landing {plan.size} offsets of {plan.topic}: {plan.ranges}")

            def landed(batch: BatchResult) -> None:
                context.log.info(f"landed {batch.rows_landed} rows of {batch.plan.ranges}")
                if config.follow_s:  # a following run lasts minutes: show each micro-batch as it commits
                    lag = probe.lag(batch.next_offsets, batch.log_ends)
                    metadata = _batch_metadata(batch) | batch_figures(batch, lag)
                    context.log_event(dg.AssetMaterialization(raw_asset_key(event_type), metadata=metadata))

            batches = land_run(
                settings, plan, follow_s=config.follow_s, on_batch=landed, run_id=context.run.run_id, group=group
            )
            lag = probe.lag(batches[-1].next_offsets) if batches else None
        dead_lettered = sum(batch.dead_lettered for batch in batches)
        if dead_lettered:
            context.log_event(
                dg.AssetMaterialization(DEAD_LETTER_KEY, metadata={"rows_added": dead_lettered, "topic": plan.topic})
            )
        seconds = {stage: round(sum(b.seconds.get(stage, 0.0) for b in batches), 3) for stage in STAGES}
        next_offsets = batches[-1].next_offsets if batches else {}
        return dg.MaterializeResult(
            metadata={
                "rows_landed": sum(batch.rows_landed for batch in batches),
                "dead_lettered": dead_lettered,
                "keys_not_user_id": sum(batch.keys_not_user_id for batch in batches),
                "micro_batches": len(batches),
                "already_landed": not batches,
                "offset_ranges": dg.MetadataValue.json({str(p): list(r) for p, r in plan.ranges.items()}),
                "next_offsets": dg.MetadataValue.json({str(p): o for p, o in next_offsets.items()}),
                "snapshot_id": str(batches[-1].snapshot_id if batches else None),
                "seconds": dg.MetadataValue.json(seconds),
                "unknown_fields": dg.MetadataValue.json(sorted({f for b in batches for f in b.unknown_fields})),
                **run_figures(batches, lag, followed=bool(config.follow_s)),
            }
        )

    return raw_events


def dead_letter_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        DEAD_LETTER_KEY,
        description="Iceberg table `raw.dead_letter`: every message that failed decoding or the batch gate, "
        "with its original bytes, topic/partition/offset, the failed checks and a reason. Written by the "
        "ingest runs; `analytics-platform dead-letters replay` lands them after a fix.",
        group_name="raw",
        kinds={"iceberg"},
        deps=[topic_asset_key(event_type) for event_type in event_types().values()],
    )
