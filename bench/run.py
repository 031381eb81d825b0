"""Ingestion benchmark: the platform's sensor-driven path against a minimal loop on the same data.

    python bench/run.py [--events N] [--repeat R] [--quick]

Prints medians (min-max) and the ratio to the ceiling measured in the same run; writes
``bench/results/<timestamp>.json``. Figures not measured yet are written as null.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NOT_YET_MEASURED = (
    "freshness_raw_p50_s",
    "freshness_raw_p95_s",
    "freshness_mart_p95_s",
    "build_full_10m_s",
    "build_incremental_day_s",
    "incremental_to_full_ratio",
    "ingest_peak_rss_mb",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def fresh_environment(root: Path) -> None:
    """A new platform home and broker port, so each repetition starts from empty tables."""
    os.environ["PLATFORM_HOME"] = str(root)
    os.environ["PLATFORM_BROKER_PORT"] = str(free_port())
    os.environ.pop("PLATFORM_CATALOG_URI", None)
    os.environ.pop("PLATFORM_KAFKA_BOOTSTRAP_SERVERS", None)


def ceiling(settings, events: int) -> float:  # type: ignore[no-untyped-def]
    """Events/s of the minimal single-process loop: consume to EOF, decode, append per ~100k rows."""
    from analytics_platform.events import EVENT_TYPES
    from analytics_platform.ingest.kafka_reader import make_consumer
    from analytics_platform.ingest.lakehouse import load_catalog

    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists("ceiling")
    started = time.perf_counter()
    consumer = make_consumer(settings.bootstrap_servers)
    landed = sum(_ceiling_topic(consumer, catalog, event_type) for event_type in EVENT_TYPES.values())
    consumer.close()
    elapsed = time.perf_counter() - started
    assert landed == events, f"ceiling landed {landed} of {events}"
    return events / elapsed


def _ceiling_topic(consumer, catalog, event_type) -> int:  # type: ignore[no-untyped-def]
    from confluent_kafka import KafkaError, TopicPartition

    from analytics_platform.contracts.gates import GateContext
    from analytics_platform.contracts.registry import load_registry
    from analytics_platform.ingest.decode import decode_batch
    from analytics_platform.ingest.kafka_reader import RawMessages, topic_partitions
    from analytics_platform.ingest.lakehouse import _day_spec, raw_table_schema

    contract = load_registry().contract(event_type.name)
    schema = raw_table_schema(contract)
    table = catalog.create_table(
        f"ceiling.{event_type.name}", schema=schema, partition_spec=_day_spec(schema, "event_at")
    )
    target = table.schema().as_arrow()
    partitions = topic_partitions(consumer, event_type.topic)
    consumer.assign([TopicPartition(event_type.topic, p, 0) for p in partitions])
    pending, chunk, landed = set(partitions), RawMessages(event_type.topic), 0
    while pending or len(chunk):
        for message in consumer.consume(10_000, timeout=0.2) if pending else []:
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                continue
            chunk.partitions.append(message.partition())
            chunk.offsets.append(message.offset())
            chunk.keys.append(message.key())
            chunk.values.append(message.value())
        if len(chunk) >= 100_000 or (not pending and len(chunk)):
            now = datetime.now(UTC)
            context = GateContext(event_type.topic, now, datetime(2000, 1, 1, tzinfo=UTC), timedelta(hours=1))
            rows = decode_batch(contract, chunk, now, target, context, max_event_bytes=1_000_000).rows
            table.append(rows)
            landed += rows.num_rows
            chunk = RawMessages(event_type.topic)
    consumer.unassign()
    return landed


def platform_ingest(settings, events: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The real path: ingest sensors ticked in-process, one Dagster run per requested micro-batch."""
    import dagster as dg

    from analytics_platform.events import EVENT_TYPES
    from analytics_platform.ingest.lakehouse import load_catalog
    from analytics_platform.instance import get_instance
    from analytics_platform.orchestration import tick_ingest_sensors
    from analytics_platform.report import landed_counts

    instance = get_instance(settings)
    started = time.perf_counter()
    runs = 0
    while ticked := tick_ingest_sensors(settings, instance, log_level="ERROR"):
        assert all(run.success for run in ticked), ticked
        runs += len(ticked)
    elapsed = time.perf_counter() - started
    landed, dead = landed_counts(load_catalog(settings), settings)
    assert sum(landed.values()) + dead == events, (landed, dead, events)
    stages = {"consume": 0.0, "decode": 0.0, "commit": 0.0}
    for name in EVENT_TYPES:
        for record in instance.fetch_materializations(dg.AssetKey(["raw", name]), limit=10_000).records:
            materialization = record.asset_materialization
            seconds = materialization.metadata.get("seconds") if materialization else None
            for stage, value in (seconds.value if seconds else {}).items():  # type: ignore[union-attr]
                stages[stage] += value
    overhead = (elapsed - sum(stages.values())) / max(runs, 1)
    return {
        "events_per_s": events / elapsed,
        "runs": runs,
        "run_overhead_s": overhead,
        **{f"{stage}_s": value for stage, value in stages.items()},
    }


def repeat(times: int, measure: Callable[[], dict[str, float]]) -> list[dict[str, float]]:
    return [measure() for _ in range(times)]


def summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 events: a smoke run of every stage")
    args = parser.parse_args()
    events = 100_000 if args.quick else args.events

    from analytics_platform import broker
    from analytics_platform.generator import generate_events
    from analytics_platform.producer import publish
    from analytics_platform.settings import get_settings
    from analytics_platform.topics import create_topics

    print(f"generating {events:,} events ...", flush=True)
    stream = generate_events(events, seed=42, days=3)

    def one_repetition() -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="bench-") as root:
            fresh_environment(Path(root))
            settings = get_settings()
            broker.start(settings)
            try:
                create_topics(settings.bootstrap_servers, settings.topic_partitions)
                publish(stream, settings.bootstrap_servers)
                ceiling_rate = ceiling(settings, events)
                result = platform_ingest(settings, events)
            finally:
                broker.stop(settings)
        result["ceiling_events_per_s"] = ceiling_rate
        result["ratio"] = result["events_per_s"] / ceiling_rate
        print(
            f"  ceiling {ceiling_rate:,.0f}/s, platform {result['events_per_s']:,.0f}/s "
            f"({result['ratio']:.2f}x) in {result['runs']:.0f} runs",
            flush=True,
        )
        return result

    print(f"{args.repeat} repetitions (each: fresh broker, produce, ceiling, platform ingest)", flush=True)
    runs = repeat(args.repeat, one_repetition)
    rows = {
        "ceiling_events_per_s": "ceiling (events/s)",
        "events_per_s": "platform ingest (events/s)",
        "ratio": "ingest / ceiling",
        "run_overhead_s": "per-run overhead (s)",
        "consume_s": "consume, all runs (s)",
        "decode_s": "decode, all runs (s)",
        "commit_s": "commit, all runs (s)",
    }
    print(f"\n{'figure':<28} {'median':>12} {'min':>12} {'max':>12}")
    figures: dict[str, object] = {}
    for key, label in rows.items():
        median, low, high = summary([run[key] for run in runs])
        figures[key] = {"median": median, "min": low, "max": high}
        print(f"{label:<28} {median:>12,.2f} {low:>12,.2f} {high:>12,.2f}")
    print("\nnot measured yet: " + ", ".join(NOT_YET_MEASURED))

    result = {
        "events": events,
        "repetitions": args.repeat,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "ceiling_events_per_s": figures["ceiling_events_per_s"],
        "ingest_events_per_s": figures["events_per_s"],
        "ingest_ratio_to_ceiling": figures["ratio"],
        "run_overhead_s": figures["run_overhead_s"],
        "ingest_stage_seconds": {stage: figures[f"{stage}_s"] for stage in ("consume", "decode", "commit")},
        **dict.fromkeys(NOT_YET_MEASURED),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
