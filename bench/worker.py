"""One measurement in a process of its own; prints its result as one JSON line.

    python bench/worker.py ceiling EVENTS       # the minimal loop
    python bench/worker.py platform EVENTS      # sensor ticks + ingest runs until caught up
    python bench/worker.py run-once TOPIC       # one ingest run of the topic, in this process (as launched)
    python bench/worker.py group TOPIC I N      # partition group I of N of the topic, until caught up
    python bench/worker.py build full           # build_marts: non-daily models, then every event day
    python bench/worker.py build day YYYY-MM-DD # the daily facts of one day (what the daily schedule runs)

The platform home and broker come from PLATFORM_* variables (bench/common.py ``isolate``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_rss_mb, rss_mb  # noqa: E402

BATCH_ROWS = 100_000


def ceiling(events: int) -> dict[str, float]:
    """consume(num_messages) on assign()ed partitions to end of log, one bulk Arrow JSON parse per ~100k
    messages (the platform's vectorised decode without its validation gate) and one pyiceberg append of
    it to a day-partitioned table."""
    import polars as pl
    from confluent_kafka import KafkaError, TopicPartition

    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.contracts.registry import load_registry
    from analytics_platform.ingest import decode
    from analytics_platform.kafka.reader import RawMessages, make_consumer, topic_partitions
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import _day_spec, raw_table_schema
    from analytics_platform.settings import get_settings

    settings = get_settings()
    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists("ceiling")
    registry = load_registry()
    started = time.perf_counter()
    consumer = make_consumer(settings)
    landed = 0
    for event_type in event_types().values():
        contract = registry.contract(event_type.name)
        schema = raw_table_schema(contract)
        table = catalog.create_table(
            f"ceiling.{event_type.name}", schema=schema, partition_spec=_day_spec(schema, "event_at")
        )
        target = table.schema().as_arrow()
        partitions = topic_partitions(consumer, event_type.topic)
        consumer.assign([TopicPartition(event_type.topic, p, 0) for p in partitions])
        pending, chunk = set(partitions), RawMessages(event_type.topic)
        while pending or len(chunk):
            for message in consumer.consume(10_000, timeout=0.05) if pending else []:
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                    continue
                chunk.partitions.append(message.partition())
                chunk.offsets.append(message.offset())
                chunk.keys.append(message.key())
                chunk.values.append(message.value())
            if len(chunk) >= BATCH_ROWS or (not pending and len(chunk)):
                frame = decode._parse(chunk.values, contract, max_event_bytes=settings.max_event_bytes)
                assert frame is not None, "the ceiling's data is all valid"
                rows = decode._to_rows(
                    decode._flatten(frame, contract, chunk, list(range(len(chunk)))), contract
                ).with_columns(
                    kafka_partition=pl.Series(chunk.partitions, dtype=pl.Int32),
                    kafka_offset=pl.Series(chunk.offsets, dtype=pl.Int64),
                    ingested_at=pl.lit(datetime.now(UTC)).cast(pl.Datetime("us", "UTC")),
                    kafka_topic=pl.lit(chunk.topic),
                )
                table.append(rows.select(target.names).to_arrow().cast(target))
                landed += len(chunk)
                chunk = RawMessages(event_type.topic)
        consumer.unassign()
    consumer.close()
    seconds = time.perf_counter() - started
    assert landed == events, f"the ceiling landed {landed} of {events} events"
    return {"events_per_s": events / seconds, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def platform(events: int) -> dict[str, float]:
    """The real path, as a warm Dagster process runs it: every ingest sensor ticks, each requested run
    executes (in process, recorded on the instance), until no sensor has anything new."""
    import dagster as dg

    import analytics_platform.definitions  # noqa: F401  (imported before the clock starts, as in a warm process)
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.local.instance import get_instance
    from analytics_platform.local.orchestration import tick_ingest_sensors
    from analytics_platform.local.report import landed_counts
    from analytics_platform.settings import get_settings

    settings = get_settings()
    instance = get_instance(settings)
    baseline_mb = rss_mb()
    started = time.perf_counter()
    runs = 0
    while ticked := tick_ingest_sensors(settings, instance, log_level="ERROR"):
        assert all(run.success for run in ticked), ticked
        runs += len(ticked)
    seconds = time.perf_counter() - started
    landed, dead = landed_counts(load_catalog(settings), settings)
    assert sum(landed.values()) == events and dead == 0, (landed, dead, events)
    stages = {"consume": 0.0, "decode": 0.0, "commit": 0.0}
    batches = 0
    for name in event_types():
        for record in instance.fetch_materializations(dg.AssetKey(["raw", name]), limit=10_000).records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            batches += int(metadata["micro_batches"].value) if "micro_batches" in metadata else 0  # type: ignore[arg-type]
            for stage, value in metadata["seconds"].value.items() if "seconds" in metadata else ():  # type: ignore[union-attr]
                if stage in stages:  # not commit_cpu, which is within commit
                    stages[stage] += value
    return {
        "events_per_s": events / seconds,
        "seconds": seconds,
        "runs": runs,
        "micro_batches": batches,
        # Everything that is not reading, decoding or committing: sensor evaluation, planning, run bookkeeping.
        "run_overhead_s": (seconds - sum(stages.values())) / max(runs, 1),
        **{f"{stage}_s": value for stage, value in stages.items()},
        "baseline_rss_mb": baseline_mb,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_once(topic: str) -> dict[str, float]:
    """One ingest run of ``topic`` in a process of its own, as the daemon launches it: its peak memory."""
    from analytics_platform.local.orchestration import ingest_through_dagster
    from analytics_platform.settings import get_settings

    started = time.perf_counter()
    landed, dead = next(ingest_through_dagster(get_settings(), topic), (0, 0))
    return {"rows": landed + dead, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def group(topic: str, index: int, count: int) -> dict[str, float]:
    """One partition group of ``topic`` landed until caught up, as its runs do; waits for "go" on stdin
    after its imports, so that the groups of a measurement start together."""
    from analytics_platform.ingest.land import land_run
    from analytics_platform.ingest.plan import PartitionGroup, plan_next_run
    from analytics_platform.settings import get_settings

    settings = get_settings()
    partition_group = PartitionGroup(index, count)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    rows = batches = retried = 0
    while (plan := plan_next_run(settings, topic, group=partition_group)) is not None:
        for batch in land_run(settings, plan, group=partition_group):
            rows += batch.rows_landed
            batches += 1
            retried += batch.commit_attempts > 1
    return {
        "started": started,
        "ended": time.time(),
        "rows": rows,
        "micro_batches": batches,
        "commits_retried": retried,
        "peak_rss_mb": peak_rss_mb(),
    }


def build(what: str, day: str | None = None) -> dict[str, float]:
    from analytics_platform.local.orchestration import backfill_daily, build_marts
    from analytics_platform.settings import get_settings

    settings = get_settings()
    log = settings.home / "logs" / "bench-build.log"
    started = time.perf_counter()
    if what == "full":
        build_marts(settings, log)
    else:
        assert day is not None, "build day needs YYYY-MM-DD"
        backfill_daily(settings, date.fromisoformat(day), date.fromisoformat(day), log)
    seconds = time.perf_counter() - started
    dbt_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # dbt runs as a subprocess
    return {"seconds": seconds, "peak_rss_mb": max(peak_rss_mb(), dbt_peak_mb), "dbt_peak_rss_mb": dbt_peak_mb}


def main() -> None:
    mode, *args = sys.argv[1:]
    if mode == "ceiling":
        result = ceiling(int(args[0]))
    elif mode == "platform":
        result = platform(int(args[0]))
    elif mode == "run-once":
        result = run_once(args[0])
    elif mode == "group":
        result = group(args[0], int(args[1]), int(args[2]))
    elif mode == "build":
        result = build(args[0], args[1] if len(args) > 1 else None)
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
