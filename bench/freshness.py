"""Freshness stage: a producer at a steady rate while ``dagster dev`` (webserver + daemon) runs the sensors.

Every event is stamped with the wall clock as it is produced. Its latency to the raw table is the
commit time of the Iceberg snapshot that landed it (each snapshot records the ``ingested_at`` it
stamped on its rows, so rows map to snapshots exactly). Its latency to ``fct_events_per_minute`` is when
a poll of the published marts (once a second, as a dashboard would) first counted it: within one
minute and event type the mart's count grows with landed events, so the k-th event of that cell (in
time order) is visible once the count reaches k.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import commit_seconds, free_port, isolate, percentile

POLL_S = 1.0
STARTUP_TIMEOUT_S = 300.0
DRAIN_TIMEOUT_S = 120.0
COMMIT_CAPTURE_EVERY = 10  # polls: well within the snapshot history ingestion keeps


def _stamped(
    events: list[dict[str, Any]], stamps: list[float] | None = None, mart_stamps: list[float] | None = None
) -> Iterator[dict[str, Any]]:
    """The events, each stamped with the time it is produced; the stamps go to ``stamps``, and those of the
    events ``fct_events_per_minute`` counts to ``mart_stamps``."""
    from analytics_platform.sim.generator import format_timestamp

    for event in events:
        now = datetime.now(UTC)
        if stamps is not None:
            stamps.append(now.timestamp())
        if mart_stamps is not None and _in_mart(event):
            mart_stamps.append(now.timestamp())
        yield dict(event, timestamp=format_timestamp(now))


def _in_mart(event: dict[str, Any]) -> bool:
    """Whether ``fct_events_per_minute`` counts the event: the activity types (app errors have a mart of their own)."""
    from analytics_platform.sim.generator import ACTIVITY_TYPES

    return event["event_type"] in ACTIVITY_TYPES


def _wait(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_S)


def _mart_counts(settings, since: datetime) -> dict[tuple[datetime, str], int]:  # type: ignore[no-untyped-def]
    from analytics_platform.warehouse import connections

    try:
        with connections.connect_marts(settings) as con:
            rows = con.execute(
                "select event_minute, event_type, event_count from marts.fct_events_per_minute where event_minute >= ?",
                [since.replace(second=0, microsecond=0)],
            ).fetchall()
    except Exception:  # noqa: BLE001 - no marts published yet, or the table is not built yet
        return {}
    return {(minute.astimezone(UTC), event_type): int(count) for minute, event_type, count in rows}


def _total_landed(settings) -> int:  # type: ignore[no-untyped-def]
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.local.report import landed_counts

    return sum(landed_counts(load_catalog(settings), settings)[0].values())


def _capture_commits(settings, commits: dict[tuple[str, str], float]) -> None:  # type: ignore[no-untyped-def]
    """Add each raw snapshot's commit time, keyed by (table, the ``ingested_at`` it stamped on its rows).

    Ingestion expires old snapshots (PLATFORM_RAW_SNAPSHOTS_KEPT), so the stage records them as it goes."""
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY
    from analytics_platform.lakehouse.tables import ensure_raw_table

    catalog = load_catalog(settings)
    for name, event_type in event_types().items():
        for snapshot in ensure_raw_table(catalog, settings, event_type).snapshots():
            properties = snapshot.summary.additional_properties if snapshot.summary else {}
            if INGESTED_AT_KEY in properties:
                commits[(name, properties[INGESTED_AT_KEY])] = snapshot.timestamp_ms / 1000


def _landed(settings, since: datetime, commits: dict[tuple[str, str], float]) -> list[tuple[str, datetime, float]]:  # type: ignore[no-untyped-def]
    """(event type, event time, commit time of its snapshot) of every raw row stamped at or after ``since``."""
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import ensure_raw_table

    _capture_commits(settings, commits)
    catalog = load_catalog(settings)
    rows = []
    for name, event_type in event_types().items():
        table = ensure_raw_table(catalog, settings, event_type)
        scan = table.scan(row_filter=f"event_at >= '{since.isoformat()}'", selected_fields=("event_at", "ingested_at"))
        data = scan.to_arrow()
        for event_at, ingested_at in zip(
            data.column("event_at").to_pylist(), data.column("ingested_at").to_pylist(), strict=True
        ):
            # A snapshot expired between two captures (none should): its rows' own stamp, a lower bound.
            committed = commits.get((name, ingested_at.isoformat()), ingested_at.timestamp())
            rows.append((name, event_at, committed))
    return rows


def _run_timings(instance, since: float) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Per job of the stage: median seconds from a run's creation (sensor request) to its first step
    starting (process launch + code load), from there to the run's end (the work itself), and per step."""
    import statistics

    import dagster as dg

    launches: dict[str, list[float]] = defaultdict(list)
    work: dict[str, list[float]] = defaultdict(list)
    steps: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in instance.get_run_records(dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC))):
        job = "ingest_*" if record.dagster_run.job_name.startswith("ingest_") else record.dagster_run.job_name
        run_id = record.dagster_run.run_id
        starts = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
        if not starts:
            continue
        step_start = starts[0].event_log_entry.timestamp
        launches[job].append(step_start - record.create_timestamp.timestamp())
        if record.end_time is None:  # a following run still going at the end of the stage
            continue
        work[job].append(record.end_time - step_start)
        started_at = {entry.event_log_entry.step_key: entry.event_log_entry.timestamp for entry in starts}
        for entry in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records:
            key = entry.event_log_entry.step_key
            if key in started_at:
                steps[job][key].append(entry.event_log_entry.timestamp - started_at[key])
    return {
        job: {
            "runs": len(launches[job]),
            "launch_s": statistics.median(launches[job]),
            "work_s": statistics.median(work[job]) if work[job] else None,
            "steps_s": {key: statistics.median(values) for key, values in steps[job].items()}
            if job != "ingest_*"
            else {},
        }
        for job in sorted(launches)
    }


def _commit_seconds_by_minute(instance, started: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Median Iceberg commit time of the micro-batches landed in each minute of the stage: it must not creep."""
    import statistics

    by_minute: dict[int, list[float]] = defaultdict(list)
    for at, seconds in commit_seconds(instance, started):
        by_minute[int((at - started) // 60)].append(seconds)
    return [statistics.median(values) for _, values in sorted(by_minute.items())]


def _live_refreshes(instance, started: float) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Each live refresh of the stage: its seconds in all and per phase (lock wait, copy, dbt, publish)."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(["marts", "fct_events_per_minute"]), limit=10_000).records
    return [
        {"seconds": float(metadata["seconds"].value), "phases": metadata["phases"].value}
        for record in records
        if record.timestamp >= started
        and record.asset_materialization is not None
        and "phases" in (metadata := record.asset_materialization.metadata)
    ]


def run(workdir: Path, *, rate: float, duration_s: float, settle_marts: bool = True, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Without ``settle_marts`` (the quick smoke run), neither the warm-up nor the end waits for the marts
    (the first full build then falls in the measured window, and the mart figures are lower bounds)."""
    from analytics_platform.kafka import broker
    from analytics_platform.kafka.admin import create_topics
    from analytics_platform.kafka.producer import publish
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import ensure_tables
    from analytics_platform.local.dev import BIN, REPO_ROOT, WORKSPACE
    from analytics_platform.local.instance import get_instance, prepare_dagster_home
    from analytics_platform.local.processes import spawn, stop_group
    from analytics_platform.settings import get_settings
    from analytics_platform.sim.generator import generate_events

    home = workdir / "freshness"
    isolate(home, free_port())
    settings = get_settings()
    prepare_dagster_home(settings)  # exports DAGSTER_HOME: dagster dev must use this instance
    env = dict(os.environ)
    count = int(rate * duration_s)
    # Generating 1.2M events takes ~25 s of one core: done while dagster dev starts and warms up.
    events: list[dict[str, Any]] = []
    generating = threading.Thread(
        target=lambda: events.extend(generate_events(count, seed=7, days=1, start=datetime.now(UTC)))
    )
    broker.start(settings)
    dev = None
    try:
        create_topics(settings, settings.topic_partitions)
        ensure_tables(load_catalog(settings), settings)
        dev = spawn(
            [str(BIN / "dagster"), "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(free_port())],
            home / "logs" / "dagster-dev.log",
            env={**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"},
            cwd=REPO_ROOT,
        )
        dev_started = time.time()
        generating.start()
        echo(f"dagster dev started (log: {home / 'logs' / 'dagster-dev.log'}); warming up ...")
        warm_up = generate_events(300, seed=8, days=1, start=datetime.now(UTC))
        warm_from = datetime.now(UTC).replace(second=0, microsecond=0)
        publish(_stamped(warm_up), settings)
        # Until the sensors have launched their (following) ingest runs and the first full marts build
        # has published: what is measured is the steady state, not a deploy's first build.
        _wait(lambda: _total_landed(settings) >= len(warm_up), STARTUP_TIMEOUT_S, "the warm-up events to land")
        echo(f"  warm-up events landed after {time.time() - dev_started:.0f}s")
        if settle_marts:
            _wait(
                lambda: sum(_mart_counts(settings, warm_from).values()) >= sum(map(_in_mart, warm_up)),
                STARTUP_TIMEOUT_S,
                "the warm-up events to reach fct_events_per_minute",
            )
            echo(f"  ... and reached fct_events_per_minute after {time.time() - dev_started:.0f}s")
        generating.join()

        echo(f"producing {count:,} events at {rate:,.0f}/s for {duration_s:.0f}s ...")
        started = time.time()
        produced: list[float] = []
        produced_in_mart: list[float] = []
        producer = threading.Thread(
            target=publish, args=(_stamped(events, produced, produced_in_mart), settings), kwargs={"rate": rate}
        )
        producer.start()
        observations: list[tuple[float, dict[tuple[datetime, str], int]]] = []
        expected = _total_landed(settings) + count
        expected_in_mart = sum(map(_in_mart, warm_up)) + sum(map(_in_mart, events))

        commit_times: dict[tuple[str, str], float] = {}
        _capture_commits(settings, commit_times)

        def drained() -> bool:
            observations.append((time.time(), _mart_counts(settings, warm_from)))
            if len(observations) % COMMIT_CAPTURE_EVERY == 0:
                _capture_commits(settings, commit_times)
            if producer.is_alive() or _total_landed(settings) < expected:
                return False
            return not settle_marts or sum(observations[-1][1].values()) >= expected_in_mart

        # If ingestion or the marts fall behind for good, stop at the deadline and report what had not
        # arrived (as latencies of at least the time waited) rather than nothing.
        deadline = time.monotonic() + duration_s + DRAIN_TIMEOUT_S
        while not drained() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        producer.join()
        ended = time.time()
        echo(f"  drained {ended - started - duration_s:.0f}s after the last event was produced")
        instance = get_instance(settings)
        timings = _run_timings(instance, dev_started)
        commits = _commit_seconds_by_minute(instance, started)
        live_refreshes = _live_refreshes(instance, started)
    finally:
        if dev is not None:
            stopping = time.monotonic()
            stop_group(dev, timeout_s=2.0)  # measured already: no need to wait for the runs to wind down
            echo(f"  dagster dev stopped in {time.monotonic() - stopping:.0f}s")
        broker.stop(settings)
    # From the warm-up's first minute: its events share the first minute's cells with measured ones.
    landed = _landed(settings, warm_from, commit_times)
    echo(f"  read back {len(landed):,} landed events")
    return _latencies(landed, observations, started, produced, produced_in_mart, ended, settle_marts) | {
        "runs": timings,
        "commit_s_by_minute": commits,
        "live_refreshes": len(live_refreshes),
        "live_refresh_p50_s": percentile(totals, 50) if (totals := [r["seconds"] for r in live_refreshes]) else None,
        "live_refresh_p95_s": percentile(totals, 95) if totals else None,
        "live_refresh_phases_p50_s": {
            phase: percentile([r["phases"][phase] for r in live_refreshes], 50) for phase in live_refreshes[0]["phases"]
        }
        if live_refreshes
        else {},
    }


def _latencies(
    landed: list[tuple[str, datetime, float]],
    observations: list[tuple[float, dict[tuple[datetime, str], int]]],
    started: float,
    produced: list[float],
    produced_in_mart: list[float],
    ended: float,
    settle_marts: bool = True,
) -> dict[str, Any]:
    """Latencies of the events produced from ``started`` on (earlier ones only fill the mart's cells);
    the mart's of those it counts (``produced_in_mart``).

    Events still missing at ``ended`` count with ``ended - produced`` (a lower bound), taken as the
    latest produced ones; the figures then say how many were censored so."""
    measured = [(name, event_at, committed) for name, event_at, committed in landed if event_at.timestamp() >= started]
    raw = [committed - event_at.timestamp() for _, event_at, committed in measured]
    not_landed = max(len(produced) - len(measured), 0)
    raw += [ended - stamp for stamp in produced[len(produced) - not_landed :]]
    cells: dict[tuple[datetime, str], list[float]] = defaultdict(list)
    for name, event_at, _ in landed:
        cells[(event_at.replace(second=0, microsecond=0), name)].append(event_at.timestamp())
    mart: list[float] = []
    for cell, stamps in cells.items():
        stamps.sort()
        seen = 0
        for observed_at, counts in observations:
            now_seen = min(counts.get(cell, 0), len(stamps))
            mart.extend(observed_at - stamp for stamp in stamps[seen:now_seen] if stamp >= started)
            seen = max(seen, now_seen)
    # Without settled marts (the quick smoke run) missing events say nothing about mart latency: left out.
    not_in_mart = max(len(produced_in_mart) - len(mart), 0) if observations and settle_marts else 0
    mart += [ended - stamp for stamp in produced_in_mart[len(produced_in_mart) - not_in_mart :]] if not_in_mart else []
    per_minute = defaultdict(list)
    for (_, event_at, _), latency in zip(measured, raw[: len(measured)], strict=True):
        per_minute[int((event_at.timestamp() - started) // 60)].append(latency)
    minutes = [percentile(values, 95) for _, values in sorted(per_minute.items())]
    return {
        "events": len(produced),
        "not_landed_by_end": not_landed,
        "not_in_mart_by_end": not_in_mart,
        "raw_p50_s": percentile(raw, 50),
        "raw_p95_s": percentile(raw, 95),
        "raw_max_s": max(raw),
        "raw_p95_by_minute_s": minutes,
        "mart_events": len(mart),
        "mart_p50_s": percentile(mart, 50),
        "mart_p95_s": percentile(mart, 95),
        "mart_max_s": max(mart) if mart else float("nan"),
    }
