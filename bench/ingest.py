"""Ingest stage: the platform's sensor-driven path against the minimal loop, on the same pre-produced log;
then the peak memory of an ingest run against the backlog's size.

One broker holds the log; every repetition lands it into a new, empty platform home, first with the
ceiling loop, then through the platform, each in a process of its own. For memory, the busiest topic's
first run executes in a process of its own, as the daemon launches it, over a 1x and a 5x backlog: its
peak RSS should depend on the micro-batch and run sizes, not on the backlog.
"""

from __future__ import annotations

import gc
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import free_port, isolate, worker

if TYPE_CHECKING:
    from analytics_platform.settings import Settings

MEMORY_EVENT_TYPE = "user_visit"  # the busiest topic: its runs are the largest
MEMORY_TOPIC = f"events.{MEMORY_EVENT_TYPE}"


def grow_backlog(events: list[dict[str, Any]], copies: int, settings: Settings) -> None:
    """Produce ``copies`` more copies of ``events`` (one topic's, validated when first produced), each with
    new event_ids (the first UUID group names the copy). Each copy's bytes are the first encoding with the
    id replaced: growing the backlog costs Kafka's time, not re-validating millions of identical envelopes."""
    from confluent_kafka import Producer

    from analytics_platform.contracts.envelope import encode_event
    from analytics_platform.kafka.client_config import client_config

    producer = Producer(
        {
            **client_config(settings),
            "enable.idempotence": True,
            "compression.type": "zstd",
            "linger.ms": settings.producer_linger_ms,
            "batch.size": 1_000_000,
        }
    )
    encoded = [(encode_event(event), event["event_id"].encode(), event["user_id"].encode()) for event in events]
    for copy in range(1, copies + 1):
        prefix = f"{copy:08x}".encode()
        for value, event_id, key in encoded:
            relabelled = value.replace(event_id, prefix + event_id[8:], 1)
            while True:
                try:
                    producer.produce(MEMORY_TOPIC, value=relabelled, key=key)
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    producer.poll(0.1)
            producer.poll(0)
    if remaining := producer.flush(120):
        raise RuntimeError(f"{remaining} messages of the grown backlog were not delivered")


def run(workdir: Path, *, events: int, memory_events: int, repeat: int, start: datetime, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from analytics_platform.kafka import broker
    from analytics_platform.kafka.admin import create_topics
    from analytics_platform.kafka.producer import publish
    from analytics_platform.settings import get_settings
    from analytics_platform.sim.generator import generate_events

    port = free_port()
    isolate(workdir / "broker-home", port)
    settings = get_settings()
    echo(f"generating and producing {events:,} events to a fresh broker on port {port} ...")
    stream = generate_events(events, seed=42, days=3, start=start)
    broker.start(settings)
    try:
        create_topics(settings, settings.topic_partitions)
        publish(stream, settings)
        repetitions = []
        for index in range(repeat):
            home = workdir / f"ingest-{index}"
            isolate(home, port)
            ceiling = worker("ceiling", events)
            landed = worker("platform", events)
            landed["ceiling_events_per_s"] = ceiling["events_per_s"]
            landed["ratio"] = landed["events_per_s"] / ceiling["events_per_s"]
            repetitions.append(landed)
            echo(
                f"  rep {index + 1}: ceiling {ceiling['events_per_s']:,.0f}/s, "
                f"platform {landed['events_per_s']:,.0f}/s "
                f"({landed['ratio']:.2f}x) in {landed['runs']} runs / {landed['micro_batches']} micro-batches, "
                f"peak RSS {landed['peak_rss_mb']:,.0f} MiB"
            )
            if index < repeat - 1:
                shutil.rmtree(home)
        keep = workdir / f"ingest-{repeat - 1}"  # raw tables of `events` events: the build stage's input
        small = [_run_peaks(workdir / f"memory-small-{index}", port, events, echo) for index in range(repeat)]

        busiest = [event for event in stream if event["event_type"] == MEMORY_EVENT_TYPE]
        del stream
        gc.collect()
        grown = len(busiest) * (memory_events // events)
        echo(f"memory: growing {MEMORY_TOPIC}'s backlog {memory_events // events}-fold, to {grown:,} events ...")
        grow_backlog(busiest, memory_events // events - 1, settings)
        large = [_run_peaks(workdir / f"memory-large-{index}", port, memory_events, echo) for index in range(repeat)]
    finally:
        broker.stop(settings)
    return {"repetitions": repetitions, "memory_small": small, "memory_large": large, "home": keep}


def _run_peaks(home: Path, port: int, backlog: int, echo) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The first ingest run of the busiest topic, in a process of its own: the largest run there is
    (it lands the whole backlog or PLATFORM_RUN_MAX_EVENTS, whichever is less; a larger backlog only
    means more runs of that size after it)."""
    isolate(home, port)
    run = worker("run-once", MEMORY_TOPIC)
    shutil.rmtree(home)
    rows, peak = run["rows"], run["peak_rss_mb"]
    echo(f"  {backlog:,} backlog: one run of {MEMORY_TOPIC} landed {rows:,} rows, peak RSS {peak:,.0f} MiB")
    return {"peak_rss_mb": peak, "rows": rows}
