"""Soak stage: the whole local platform (``analytics-platform dev``: broker, dagster dev with its sensors and
schedules, API, SQL endpoint, exporter) under a steady stream for an hour, then checks it stayed healthy.

The stage produces the live generator's stream itself (``dev --rate 0``), so it knows when production
ends. While it runs it samples, once a minute, the resident memory of every ingest run's process and the
data files of each raw day partition. When production ends and ingestion has drained, an independent
client (kafka-python, not the platform's confluent-kafka) reads every topic from the start, and each
message is matched to its raw row by topic, partition and offset:

* exactly once: every message landed, none twice, no duplicate ``event_id``;
* produce -> raw latency of each message: the Kafka timestamp (set by the producer) to the commit time
  of the snapshot that landed it (kept snapshots from the table, expired ones from raw.ingest_snapshots),
  p95 per window (5 minutes; a sixth of the run with ``--quick``), and its trend (least-squares slope);
* commit time: the median of the micro-batch commits in the first and the last sixth of the run, and per window,
  on the clock and in CPU seconds (a busy machine lengthens the first, not the second);
* ingest RSS: the largest ingest process in the last sixth against the first;
* files per partition: the most data files any raw day partition held, over time;
* where the CPU went: each minute, the machine's busy share of all cores, the CPU seconds of each Dagster
  run's process tree (its worker and the dbt or DuckDB work it starts) by job, and those of every other process
  by its role (daemon, webserver, code server, broker, PostgreSQL, the soak's producer), to tell lag from
  contention and to see which work grows with the lake.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from common import commit_seconds, free_port, isolate, percentile

SAMPLE_S = 60.0
STARTUP_TIMEOUT_S = 300.0
DRAIN_TIMEOUT_S = 300.0
WARM_UP_EVENTS = 300


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _run_processes(instance) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    """Job name and pid of each run in progress: its worker (a child of the code server, whose command line
    does not name the run) reports it in an engine event, "Started process for run (pid: N)"."""
    import dagster as dg

    found: dict[str, tuple[str, int]] = {}
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            if match := re.search(r"Started process for run \(pid: (\d+)\)", entry.message or ""):
                found[run.run_id] = (run.job_name, int(match.group(1)))
                break
    return found


TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[int, float, float, str]]:
    """pid -> (parent pid, CPU seconds it used, CPU seconds of its ended children it reaped, command line)."""
    table: dict[int, tuple[int, float, float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        own = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
        reaped = (int(fields[13]) + int(fields[14])) / TICKS_PER_S
        table[int(entry.name)] = (int(fields[1]), own, reaped, command)
    return table


def _children(table: dict[int, tuple[int, float, float, str]]) -> dict[int, list[int]]:
    """pid -> pids of its children, from :func:`_process_table`."""
    children: dict[int, list[int]] = defaultdict(list)
    for child, (parent, *_) in table.items():
        children[parent].append(child)
    return children


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    """``pid`` and its descendants still running."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def _cpu_s(pids: list[int], table: dict[int, tuple[int, float, float, str]]) -> float:
    """CPU seconds of ``pids`` and of their children that ended (a dbt child counts for its run)."""
    return sum(table[pid][1] + table[pid][2] for pid in pids if pid in table)


# What else runs beside the Dagster runs, by command line: the first pattern that matches names the process.
ROLES = (
    ("dagster daemon", re.compile(r"dagster[-_]daemon|dagster dev|dagster\._?daemon")),
    ("dagster webserver", re.compile(r"dagster[-_]webserver")),
    ("code server", re.compile(r"dagster.*(api grpc|code[-_]server)")),
    ("run workers not in the event log yet", re.compile(r"multiprocessing\.spawn")),
    ("broker", re.compile(r"tansu|calfkit")),
    ("postgresql", re.compile(r"^postgres")),
    ("dbt outside runs", re.compile(r"\bdbt\b")),
)


def _role(command: str, soak_pid: int, pid: int) -> str:
    if pid == soak_pid:
        return "soak (producer, sampler)"
    for role, pattern in ROLES:
        if pattern.search(command):
            return role
    words = command.split()
    if len(words) >= 2 and Path(words[0]).name.startswith("python"):
        return "python " + " ".join(Path(w).name for w in words[1:3])
    return Path(words[0]).name if words else "kernel threads"


def _busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _files_per_partition(settings) -> int:  # type: ignore[no-untyped-def]
    """The most data files any day partition of any raw table holds in its current snapshot."""
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import ensure_raw_table

    catalog = load_catalog(settings)
    most = 0
    for event_type in event_types().values():
        table = ensure_raw_table(catalog, settings, event_type)
        if table.current_snapshot() is None:
            continue
        counts: dict[str, int] = defaultdict(int)
        for task in table.scan().plan_files():
            counts[str(task.file.partition)] += 1
        most = max([most, *counts.values()])
    return most


def _commit_times(settings) -> dict[tuple[str, datetime], float]:  # type: ignore[no-untyped-def]
    """Commit time of every raw snapshot that landed rows, keyed by (table, the ingested_at it stamped):
    the kept snapshots from each table, the expired ones from raw.ingest_snapshots."""
    from pyiceberg.exceptions import NoSuchTableError

    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, properties
    from analytics_platform.lakehouse.tables import LINEAGE_TABLE, ensure_raw_table, table_identifier

    catalog = load_catalog(settings)
    commits: dict[tuple[str, datetime], float] = {}
    try:
        recorded = catalog.load_table(table_identifier(settings, LINEAGE_TABLE))
    except NoSuchTableError:  # nothing was expired
        recorded = None
    if recorded is not None and recorded.current_snapshot() is not None:
        data = recorded.scan(selected_fields=("table_name", "committed_at", "ingested_at")).to_arrow()
        for name, committed_at, ingested_at in zip(
            data.column("table_name").to_pylist(),
            data.column("committed_at").to_pylist(),
            data.column("ingested_at").to_pylist(),
            strict=True,
        ):
            commits[(name, ingested_at)] = committed_at.timestamp()
    for name, event_type in event_types().items():
        for snapshot in ensure_raw_table(catalog, settings, event_type).snapshots():
            if INGESTED_AT_KEY in (props := properties(snapshot)):
                at = datetime.fromisoformat(props[INGESTED_AT_KEY])
                commits[(table_identifier(settings, name), at)] = snapshot.timestamp_ms / 1000
    return commits


def _kafka_messages(bootstrap: str, topics: list[str]) -> dict[tuple[str, int, int], float]:
    """(topic, partition, offset) -> Kafka timestamp in seconds of every message, read by kafka-python to the
    end of each partition (the embedded broker's high watermark is not trusted: read until nothing comes)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        messages: dict[tuple[str, int, int], float] = {}
        for message in consumer:  # ends after 10 s without a message
            messages[(message.topic, message.partition, message.offset)] = message.timestamp / 1000
        return messages
    finally:
        consumer.close()


def _landed_rows(settings) -> tuple[dict[tuple[str, int, int], tuple[str, datetime]], int]:  # type: ignore[no-untyped-def]
    """(topic, partition, offset) -> (table name, ingested_at) of every raw row, and the number of rows
    beyond one per message (duplicates) plus duplicate event ids."""
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import ensure_raw_table, table_identifier

    catalog = load_catalog(settings)
    rows: dict[tuple[str, int, int], tuple[str, datetime]] = {}
    doubled = 0
    for name, event_type in event_types().items():
        data = (
            ensure_raw_table(catalog, settings, event_type)
            .scan(selected_fields=("event_id", "kafka_topic", "kafka_partition", "kafka_offset", "ingested_at"))
            .to_arrow()
        )
        ids = data.column("event_id").to_pylist()
        doubled += len(ids) - len(set(ids))
        for topic, partition, offset, ingested_at in zip(
            data.column("kafka_topic").to_pylist(),
            data.column("kafka_partition").to_pylist(),
            data.column("kafka_offset").to_pylist(),
            data.column("ingested_at").to_pylist(),
            strict=True,
        ):
            key = (topic, partition, offset)
            doubled += key in rows
            rows[key] = (table_identifier(settings, name), ingested_at)
    return rows, doubled


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds since start, value), per hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread_x = sum((x - mean_x) ** 2 for x in xs)
    if spread_x == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread_x * 3600


def run(workdir: Path, *, rate: float, duration_s: float, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.kafka import broker
    from analytics_platform.kafka.producer import publish
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.local.dev import BIN, REPO_ROOT
    from analytics_platform.local.instance import get_instance
    from analytics_platform.local.processes import spawn, stop_group
    from analytics_platform.local.report import landed_counts
    from analytics_platform.settings import get_settings
    from analytics_platform.sim.generator import live_sessions

    home = workdir / "soak"
    env = isolate(home, free_port())
    for name in ("PLATFORM_API_PORT", "PLATFORM_SQL_PORT", "PLATFORM_EXPORTER_PORT"):
        env[name] = os.environ[name] = str(free_port())
    settings = get_settings()
    window_s = 300.0 if duration_s >= 1800 else duration_s / 6
    # The stage's own broker, which dev uses: it outlives dev, so the messages can be read back after.
    broker.start(settings)
    dev = spawn(
        [str(BIN / "analytics-platform"), "dev", "--rate", "0", "--port", str(free_port())],
        home / "dev.log",
        env={**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"},
        cwd=REPO_ROOT,
    )

    def landed() -> int:
        try:
            return sum(landed_counts(load_catalog(settings), settings)[0].values())
        except Exception:  # noqa: BLE001 - dev has not created the catalog yet
            return -1

    def wait(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not condition():
            if dev.poll() is not None:
                raise RuntimeError(f"analytics-platform dev exited ({dev.returncode}); see {home / 'dev.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            time.sleep(1.0)

    samples: list[dict[str, Any]] = []
    try:
        began = time.time()
        wait(lambda: landed() >= 0, STARTUP_TIMEOUT_S, "dev to create the raw tables")
        stream = itertools.chain.from_iterable(live_sessions(seed=11))
        publish(itertools.islice(stream, WARM_UP_EVENTS), settings)
        wait(lambda: landed() >= WARM_UP_EVENTS, STARTUP_TIMEOUT_S, "the warm-up events to land")
        echo(f"  dev up and ingesting after {time.time() - began:.0f}s (log: {home / 'dev.log'})")

        count = int(rate * duration_s)
        expected = landed() + count
        echo(f"producing {count:,} events at {rate:,.0f}/s for {duration_s:.0f}s ...")
        started = time.time()
        producer = threading.Thread(
            target=publish, args=(itertools.islice(stream, count), settings), kwargs={"rate": rate}
        )
        producer.start()
        instance = get_instance(settings)
        peak: dict[str, float] = {}  # run id -> largest RSS seen
        cpu_seen: dict[str, float] = {}  # run id -> CPU seconds of its process tree at the last sample
        # pid -> (parent pid, CPU seconds of it and its reaped children) at the last sample
        process_seen = {pid: (parent, own + reaped) for pid, (parent, own, reaped, _) in _process_table().items()}
        ticks = _busy_ticks()
        next_sample = time.monotonic()
        while producer.is_alive() or landed() < expected:
            if time.time() - started > duration_s + DRAIN_TIMEOUT_S:
                echo(f"  not drained {DRAIN_TIMEOUT_S:.0f}s after production ended: {landed():,} of {expected:,}")
                break
            if dev.poll() is not None:
                raise RuntimeError(f"analytics-platform dev exited ({dev.returncode}); see {home / 'dev.log'}")
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_S
                runs = _run_processes(instance)
                ingest = {run: pid for run, (job, pid) in runs.items() if job.startswith("ingest_")}
                rss = {run: r for run, pid in ingest.items() if (r := _rss_mb(pid)) is not None}
                for run, value in rss.items():
                    peak[run] = max(peak.get(run, 0.0), value)
                # CPU since the last sample, by job (a run's share before its first sample is not counted).
                processes, now_ticks = _process_table(), _busy_ticks()
                children = _children(processes)
                cpu_by_job: dict[str, float] = defaultdict(float)
                in_runs: set[int] = set()
                for run, (job, pid) in runs.items():
                    tree = _tree(pid, children)
                    in_runs.update(tree)
                    used = _cpu_s(tree, processes)
                    cpu_by_job[job] += used - cpu_seen.get(run, used)
                    cpu_seen[run] = used
                # Every other process by its role, from what it used since the last sample (one seen for the
                # first time: since its start). A process that ended meanwhile adds all it used to its
                # parent's reaped time, of which all but its last moments were counted already.
                cpu_by_role: dict[str, float] = defaultdict(float)
                counted = defaultdict(float)
                for pid, (parent, used) in process_seen.items():
                    if pid not in processes:
                        counted[parent] += used
                for pid, (parent, own, reaped, command) in processes.items():
                    used = own + reaped
                    if pid not in in_runs:
                        role = _role(command, os.getpid(), pid)
                        cpu_by_role[role] += used - process_seen.get(pid, (parent, 0.0))[1] - counted[pid]
                process_seen = {pid: (parent, own + reaped) for pid, (parent, own, reaped, _) in processes.items()}
                busy = (now_ticks[0] - ticks[0]) / max(1, now_ticks[1] - ticks[1])
                ticks = now_ticks
                sample = {
                    "at_s": round(time.time() - started, 1),
                    "landed": landed(),
                    "ingest_rss_mb": max(rss.values(), default=None),
                    # Each ingest run's RSS by its job: tells a run growing with its age from one starting larger.
                    "ingest_rss_by_run": {f"{runs[run][0]} {run[:8]}": round(mb) for run, mb in sorted(rss.items())},
                    "files_per_partition": _files_per_partition(settings),
                    "cpu_busy": round(busy, 3),
                    "cpu_s_by_job": {job: round(seconds, 1) for job, seconds in sorted(cpu_by_job.items())},
                    "cpu_s_by_role": {
                        role: round(seconds, 1) for role, seconds in sorted(cpu_by_role.items()) if seconds >= 0.5
                    },
                }
                samples.append(sample)
                heaviest = sorted(cpu_by_job.items(), key=lambda item: -item[1])[:3]
                busiest = sorted(cpu_by_role.items(), key=lambda item: -item[1])[:3]
                echo(
                    f"  {sample['at_s']:>6.0f}s: {sample['landed']:,} landed, ingest RSS "
                    f"{sample['ingest_rss_mb'] or 0:,.0f} MiB, <= {sample['files_per_partition']} files per partition, "
                    f"CPU {busy:.0%} busy ("
                    + ", ".join(f"{job} {sec:.0f}s" for job, sec in heaviest)
                    + "; "
                    + ", ".join(f"{role} {sec:.0f}s" for role, sec in busiest)
                    + ")"
                )
            time.sleep(1.0)
        producer.join()
        ended = time.time()
        commits = commit_seconds(instance, started)
        commits_cpu = commit_seconds(instance, started, stage="commit_cpu")
    finally:
        stop_group(dev, timeout_s=60.0)
    try:
        echo("  reading every topic back with kafka-python ...")
        messages = _kafka_messages(settings.bootstrap_servers, [t.topic for t in event_types().values()])
    finally:
        broker.stop(settings)
    rows, doubled = _landed_rows(settings)
    return _figures(
        messages, rows, doubled, _commit_times(settings), started, ended, window_s, samples, commits, commits_cpu, peak
    )


def _cpu_total(samples: list[dict[str, Any]], by: str) -> dict[str, float]:
    """CPU seconds over the whole soak of each job's runs (``by="cpu_s_by_job"``) or each other role, most first."""
    totals: dict[str, float] = defaultdict(float)
    for sample in samples:
        for name, seconds in sample[by].items():
            totals[name] += seconds
    return {name: round(seconds, 1) for name, seconds in sorted(totals.items(), key=lambda item: -item[1])}


def _figures(
    messages: dict[tuple[str, int, int], float],
    rows: dict[tuple[str, int, int], tuple[str, datetime]],
    doubled: int,
    commit_times: dict[tuple[str, datetime], float],
    started: float,
    ended: float,
    window_s: float,
    samples: list[dict[str, Any]],
    commits: list[tuple[float, float]],
    commits_cpu: list[tuple[float, float]],
    peak: dict[str, float],
) -> dict[str, Any]:
    measured = {key: stamp for key, stamp in messages.items() if stamp >= started}
    missing = [key for key in measured if key not in rows]
    # Rows landed from no message read back (none should be): an offset the log no longer holds.
    unknown = [key for key in rows if key not in messages]
    windows: dict[int, list[float]] = defaultdict(list)
    unmatched = 0
    for key, stamp in measured.items():
        if key not in rows:
            continue
        committed = commit_times.get(rows[key])
        if committed is None:
            unmatched += 1
            continue
        windows[int((stamp - started) // window_s)].append(committed - stamp)
    latencies = [value for values in windows.values() for value in values]
    p95_by_window = [percentile(values, 95) for _, values in sorted(windows.items())]
    sixth = (ended - started) / 6

    def commit_median(low: float, high: float, of: list[tuple[float, float]] = commits) -> float | None:
        values = [seconds for at, seconds in of if low <= at - started < high]
        return statistics.median(values) if values else None

    def by_window(of: list[tuple[float, float]]) -> list[float]:
        grouped: dict[int, list[float]] = defaultdict(list)
        for at, seconds in of:
            grouped[int((at - started) // window_s)].append(seconds)
        return [statistics.median(values) for _, values in sorted(grouped.items())]

    first_rss = [s["ingest_rss_mb"] for s in samples if s["at_s"] < sixth and s["ingest_rss_mb"] is not None]
    last_rss = [s["ingest_rss_mb"] for s in samples if s["at_s"] >= 5 * sixth and s["ingest_rss_mb"] is not None]
    return {
        "events": len(measured),
        "not_landed": len(missing),
        "landed_twice": doubled,
        "rows_without_message": len(unknown),
        "latency_unmatched": unmatched,
        "window_s": window_s,
        "raw_p50_s": percentile(latencies, 50) if latencies else None,
        "raw_p95_s": percentile(latencies, 95) if latencies else None,
        "raw_p95_by_window_s": p95_by_window,
        "raw_p95_slope_s_per_hour": _slope_per_hour([(i * window_s, v) for i, v in enumerate(p95_by_window)]),
        "commit_median_first_s": commit_median(0, sixth),
        "commit_median_last_s": commit_median(5 * sixth, float("inf")),
        "commits": len(commits),
        "commit_median_by_window_s": by_window(commits),
        # The commit's CPU time, which a busy machine does not lengthen the way it does the clock's.
        "commit_cpu_median_first_s": commit_median(0, sixth, commits_cpu),
        "commit_cpu_median_last_s": commit_median(5 * sixth, float("inf"), commits_cpu),
        "commit_cpu_median_by_window_s": by_window(commits_cpu),
        "ingest_rss_first_mb": max(first_rss, default=None),
        "ingest_rss_last_mb": max(last_rss, default=None),
        "ingest_runs_seen": len(peak),
        "files_per_partition_by_sample": [s["files_per_partition"] for s in samples],
        "cpu_busy_by_sample": [s["cpu_busy"] for s in samples],
        "cpu_s_by_job": _cpu_total(samples, "cpu_s_by_job"),
        "cpu_s_by_role": _cpu_total(samples, "cpu_s_by_role"),
        "samples": samples,
    }
