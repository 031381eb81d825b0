"""Groups stage: one topic landed by 1 and by 2 partition groups (PLATFORM_INGEST_WORKERS_PER_TOPIC).

One broker holds one topic's log (``events.user_visit`` only, GROUP_PARTITIONS partitions); each
repetition lands it into a new, empty platform home, first with one group, then with two, each group in a
process of its own as its runs would be (planning and landing runs of its partitions until caught up). The
processes import first and start together on a signal; the clock runs from the first start to the last
end. With 2 cores shared by every group, the broker and the catalog, two groups cannot double the rate:
what they can overlap is one group's Kafka reads and commits with the other's decoding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from common import WORKER, free_port, isolate

GROUP_EVENT_TYPE = "user_visit"
GROUP_TOPIC = f"events.{GROUP_EVENT_TYPE}"
GROUP_PARTITIONS = 6
GROUP_COUNTS = (1, 2)


def _land_with_groups(count: int) -> dict[str, Any]:
    """Every group of ``count`` in its own process, started together; their combined events/s."""
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import ensure_raw_table
    from analytics_platform.settings import get_settings

    settings = get_settings()
    # Created here, before the groups start: as in a deployment, the table exists when runs land into it.
    ensure_raw_table(load_catalog(settings), settings, event_types()[GROUP_EVENT_TYPE])
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "group", GROUP_TOPIC, str(index), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(count)
    ]
    for process in workers:  # each says "ready" once imported
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    for process in workers:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in workers:
        out, _ = process.communicate(timeout=3600)
        if process.returncode != 0:
            raise RuntimeError(f"group worker failed ({process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    rows = sum(r["rows"] for r in results)
    return {
        "groups": count,
        "rows": rows,
        "seconds": seconds,
        "events_per_s": rows / seconds,
        "micro_batches": sum(r["micro_batches"] for r in results),
        "commits_retried": sum(r["commits_retried"] for r in results),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
    }


def run(workdir: Path, *, events: int, repeat: int, start: datetime, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from analytics_platform.kafka import broker
    from analytics_platform.kafka.admin import create_topics
    from analytics_platform.kafka.producer import publish
    from analytics_platform.settings import get_settings
    from analytics_platform.sim.generator import generate_events

    port = free_port()
    isolate(workdir / "groups-broker-home", port)
    os.environ["PLATFORM_TOPIC_PARTITIONS"] = str(GROUP_PARTITIONS)
    settings = get_settings()
    stream = [e for e in generate_events(events, seed=43, days=3, start=start) if e["event_type"] == GROUP_EVENT_TYPE]
    echo(f"producing {len(stream):,} {GROUP_TOPIC} events ({GROUP_PARTITIONS} partitions) to port {port} ...")
    broker.start(settings)
    try:
        create_topics(settings, settings.topic_partitions)
        publish(stream, settings)
        repetitions = []
        for index in range(repeat):
            landed: dict[int, dict[str, Any]] = {}
            for count in GROUP_COUNTS:
                home = workdir / f"groups-{count}-{index}"
                isolate(home, port)
                landed[count] = _land_with_groups(count)
                assert landed[count]["rows"] == len(stream), landed[count]
                shutil.rmtree(home)
            one, two = landed[1], landed[2]
            repetitions.append(
                {
                    "one_events_per_s": one["events_per_s"],
                    "two_events_per_s": two["events_per_s"],
                    "ratio": two["events_per_s"] / one["events_per_s"],
                    "two_commits_retried": two["commits_retried"],
                    "two_micro_batches": two["micro_batches"],
                }
            )
            echo(
                f"  rep {index + 1}: 1 group {one['events_per_s']:,.0f}/s | 2 groups {two['events_per_s']:,.0f}/s "
                f"= {two['events_per_s'] / one['events_per_s']:.2f}x "
                f"({two['commits_retried']} of {two['micro_batches']} commits went on top of the other group)"
            )
    finally:
        broker.stop(settings)
        os.environ.pop("PLATFORM_TOPIC_PARTITIONS", None)
    return {"events": len(stream), "repetitions": repetitions}
