"""The replay jobs: re-read a Kafka range, replay dead letters (the day-range replay is ``build_daily_marts``).

Thin ops over :mod:`analytics_platform.ingest.reread` and :mod:`analytics_platform.ingest.replay`; the
API and the CLI launch them through :mod:`analytics_platform.serving.replays`, which tags each run with
its replay id. Both are idempotent, so a run retried after its worker died lands nothing twice.
"""

import json
from datetime import datetime

import dagster as dg
from pydantic import Field

from analytics_platform.contracts.envelope import event_type_for_topic
from analytics_platform.defs.ingestion.assets import DEAD_LETTER_KEY, raw_asset_key
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import CRASH_RETRY_TAGS, TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.workloads import REPLAY
from analytics_platform.ingest.replay import replay_dead_letters
from analytics_platform.ingest.reread import offsets_for_times, reread
from analytics_platform.serving.replays import DEAD_LETTERS_JOB, DEAD_LETTERS_OP, REREAD_JOB, REREAD_OP


class RereadConfig(dg.Config):
    topic: str = Field(description="The topic to re-read, e.g. events.purchase.")
    ranges: str = Field(default="{}", description='JSON {"<partition>": [start, end]} (end exclusive).')
    start_time: str = Field(default="", description="Or an ISO time range of message timestamps: from ...")
    end_time: str = Field(default="", description="... to (exclusive).")
    replay_id: str = Field(description="Recorded in the snapshots the re-read commits.")


@dg.op(name=REREAD_OP, retry_policy=TRANSIENT_RETRY)
def reread_kafka_range(
    context: dg.OpExecutionContext, config: RereadConfig, platform: PlatformResource
) -> dg.Output[None]:
    """Re-read the range from Kafka: land the messages that never landed, count the ones that did."""
    settings = platform.settings()
    with honest_failures(context):
        ranges = {int(p): (int(start), int(end)) for p, (start, end) in json.loads(config.ranges).items()}
        if config.start_time:
            start, end = datetime.fromisoformat(config.start_time), datetime.fromisoformat(config.end_time)
            ranges = offsets_for_times(settings, config.topic, start, end)
            context.log.info(f"messages of {config.topic} from {start} to {end} are at offsets {ranges}")
        result = reread(settings, config.topic, ranges, reread_id=config.replay_id, run_id=context.run.run_id)
    counts = result.counts()
    context.log.info(f"re-read {config.topic} {ranges}: {counts}")
    if result.landed:
        key = raw_asset_key(event_type_for_topic(config.topic))
        context.log_event(dg.AssetMaterialization(key, metadata={"rows_landed": result.landed, "replay": True}))
    if result.dead_lettered:
        context.log_event(dg.AssetMaterialization(DEAD_LETTER_KEY, metadata={"rows_added": result.dead_lettered}))
    ranges_json = {str(p): list(r) for p, r in sorted(ranges.items())}
    return dg.Output(None, metadata={**counts, "ranges": dg.MetadataValue.json(ranges_json)})


class DeadLettersConfig(dg.Config):
    topic: str = Field(default="", description="Only dead letters of this topic.")
    check: str = Field(default="", description="Only those that failed this check.")
    messages: list[str] = Field(default=[], description="Only these, as topic:partition:offset.")


@dg.op(name=DEAD_LETTERS_OP, retry_policy=TRANSIENT_RETRY)
def replay_dead_letters_op(
    context: dg.OpExecutionContext, config: DeadLettersConfig, platform: PlatformResource
) -> dg.Output[None]:
    """Replay the chosen dead letters through decode and gate; those that pass land in their raw tables."""
    keys = [(t, int(p), int(o)) for t, p, o in (m.rsplit(":", 2) for m in config.messages)] or None
    with honest_failures(context):
        result = replay_dead_letters(
            platform.settings(),
            topic=config.topic or None,
            check=config.check or None,
            keys=keys,
            run_id=context.run.run_id,
        )
    for topic, landed in result.landed.items():
        if landed:
            context.log_event(
                dg.AssetMaterialization(
                    raw_asset_key(event_type_for_topic(topic)), metadata={"rows_landed": landed, "replay": True}
                )
            )
    still_failing = {f"{t}:{p}:{o}": reason for (t, p, o), reason in sorted(result.still_failing.items())}
    context.log.info(f"{result.chosen} dead letters chosen, landed {result.landed}, {len(still_failing)} still failing")
    return dg.Output(
        None,
        metadata={
            "chosen": result.chosen,
            "landed": sum(result.landed.values()),
            "still_failing": len(still_failing),
            "landed_per_topic": dg.MetadataValue.json(result.landed),
            "still_failing_reasons": dg.MetadataValue.json(dict(list(still_failing.items())[:100])),
        },
    )


@dg.job(
    name=REREAD_JOB,
    executor_def=dg.in_process_executor,
    tags=CRASH_RETRY_TAGS | REPLAY.tags(),
    description="Replay: re-read a topic's offset or time range from Kafka and land what never landed "
    "(launched by POST /v1/replays or `analytics-platform replay offsets`).",
)
def replay_kafka_range() -> None:
    reread_kafka_range()


@dg.job(
    name=DEAD_LETTERS_JOB,
    executor_def=dg.in_process_executor,
    tags=CRASH_RETRY_TAGS | REPLAY.tags(),
    description="Replay: land dead letters that pass decode and gate after a fix "
    "(launched by POST /v1/replays or `analytics-platform replay dead-letters`).",
)
def replay_dead_letters_job() -> None:
    replay_dead_letters_op()


def replay_definitions() -> dg.Definitions:
    return dg.Definitions(jobs=[replay_kafka_range, replay_dead_letters_job])
