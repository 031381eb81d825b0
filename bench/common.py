"""What every benchmark stage shares: isolated platform homes, worker processes, statistics, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
WORKER = BENCH / "worker.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def isolate(home: Path, broker_port: int) -> dict[str, str]:
    """Point this process (and the children it starts) at a platform home and broker of their own."""
    for inherited in ("PLATFORM_CATALOG_URI", "PLATFORM_KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME"):
        os.environ.pop(inherited, None)
    os.environ["PLATFORM_HOME"] = str(home)
    os.environ["PLATFORM_BROKER_PORT"] = str(broker_port)
    return dict(os.environ)


@contextlib.contextmanager
def serving_broker() -> Iterator[None]:
    """An embedded broker for a stage's builds: every marts build ends by sending the headline metrics to
    the metrics topic (docs/serving.md#the-metrics-topic), so a build measured is a build as it runs."""
    from analytics_platform.kafka import broker
    from analytics_platform.settings import get_settings

    settings = get_settings()
    broker.start(settings)
    try:
        yield
    finally:
        broker.stop(settings)


def full_build_process() -> subprocess.Popen[bytes]:
    """A full marts build (``worker.py build full``) in the background: the load a serving stage runs under."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), "build", "full"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def run_clients(client: Callable[[int], None], count: int) -> float:
    """``client(0)`` .. ``client(count - 1)`` in threads at once; returns the seconds until all are done."""
    threads = [threading.Thread(target=client, args=(index,)) for index in range(count)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - began


def worker(mode: str, *args: object) -> dict[str, Any]:
    """Run ``bench/worker.py mode args`` in a fresh process (so its peak RSS is its own) and return its JSON."""
    done = subprocess.run(
        [sys.executable, str(WORKER), mode, *map(str, args)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of the repetitions."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank; what p50/p95 of latencies mean here."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def commit_seconds(instance, since: float, stage: str = "commit") -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """(time, commit seconds) of every micro-batch the raw assets recorded since ``since`` (``stage="commit_cpu"``:
    the commit's CPU seconds)."""
    import dagster as dg

    from analytics_platform.contracts.envelope import event_types

    commits = []
    for name in event_types():
        cursor = None
        while True:  # newest first, in pages: Dagster returns at most 10,000 records per call
            page = instance.fetch_materializations(dg.AssetKey(["raw", name]), limit=10_000, cursor=cursor)
            for record in page.records:
                metadata = record.asset_materialization.metadata if record.asset_materialization else {}
                if record.timestamp >= since and "seconds" in metadata and "micro_batches" not in metadata:
                    commit = metadata["seconds"].value.get(stage)  # type: ignore[union-attr]
                    if commit is not None:
                        commits.append((record.timestamp, float(commit)))
            if not page.has_more or (page.records and page.records[-1].timestamp < since):
                break
            cursor = page.cursor
    return sorted(commits)
