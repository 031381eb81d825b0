"""Benchmarks of the platform on this machine, each against a baseline measured in the same run.

    python bench/run.py [--quick] [--repeat R] [--stages ingest,build,freshness]

Stages (all on the embedded broker, in temporary platform homes):
  ingest     the minimal loop (ceiling) and the platform's sensor-driven ingest over the same log, then
             the ingest process's peak memory with a 5x larger backlog
  build      dbt build of all marts through Dagster at N and 10xN events; the daily build of one new day
  groups     one topic (6 partitions) landed by 1 and by 2 partition groups, each group a process of its
             own (PLATFORM_INGEST_WORKERS_PER_TOPIC): events/s side by side, and their ratio
  freshness  a steady producer while `dagster dev` runs the sensors: latency to raw and to the marts
  soak       `analytics-platform dev` under 2,000 events/s for an hour (`make soak`): latency per 5-minute
             window and its trend, commit time, ingest memory and files per partition over time, and every
             event landed exactly once (counted by kafka-python)

Prints each figure as the median of the repetitions with min and max, and writes
``bench/results/<timestamp>.json``. ``--quick`` shrinks every stage for a smoke run (one repetition).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, cpu_model, spread  # noqa: E402

FULL = {
    "events": 1_000_000,
    "memory_events": 5_000_000,
    "rate": 2_000.0,
    "duration_s": 600.0,
    "api_duration_s": 60.0,
    "sql_duration_s": 60.0,
    "soak_duration_s": 3600.0,
    "group_events": 600_000,
    "repeat": 3,
}
QUICK = {
    "events": 50_000,
    "memory_events": 100_000,
    "rate": 2_000.0,
    "duration_s": 10.0,
    "api_duration_s": 15.0,
    "sql_duration_s": 15.0,
    "soak_duration_s": 300.0,
    "group_events": 30_000,
    "repeat": 1,
}
# `make bench` runs all but the soak, an hour on its own: `make soak` (or --stages soak).
STAGES = ("ingest", "build", "api", "sql", "groups", "freshness", "soak")
DEFAULT_STAGES = STAGES[:-1]


def echo(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def table(rows: list[tuple[str, dict[str, float] | float | None, str]]) -> str:
    lines = [f"{'figure':<52} {'median':>11} {'min':>11} {'max':>11}  baseline / target"]
    for label, value, note in rows:
        if value is None:
            continue
        figures = value if isinstance(value, dict) else {"median": value, "min": value, "max": value}
        lines.append(
            f"{label:<52} {figures['median']:>11,.2f} {figures['min']:>11,.2f} {figures['max']:>11,.2f}  {note}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition: a smoke run (~3 min)")
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default 3; 1 with --quick)")
    parser.add_argument(
        "--stages", default=",".join(DEFAULT_STAGES), help=f"comma-separated subset of {', '.join(STAGES)}"
    )
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.repeat:
        sizes["repeat"] = args.repeat
    stages = [stage.strip() for stage in args.stages.split(",") if stage.strip()]
    if unknown := set(stages) - set(STAGES):
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if "build" in stages and "ingest" not in stages:
        parser.error("the build stage builds on the ingest stage's raw tables: add ingest to --stages")
    if "api" in stages and "build" not in stages:
        parser.error("the api stage serves the build stage's marts and 10x raw tables: add ingest,build to --stages")
    if "sql" in stages and "build" not in stages:
        parser.error("the sql stage serves the build stage's marts: add ingest,build to --stages")

    import api
    import build
    import freshness
    import groups
    import ingest
    import soak
    import sql

    events, repeat = int(sizes["events"]), int(sizes["repeat"])
    # The data ends before today, so the 10x copies and the new day are all inside the daily partitions.
    start = (datetime.now(UTC) - timedelta(days=10 * build.SPAN_DAYS + 2)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict[str, Any] = {}
    try:
        if "ingest" in stages:
            echo(f"ingest: {events:,} events, {repeat} repetitions")
            results["ingest"] = ingest.run(
                workdir, events=events, memory_events=int(sizes["memory_events"]), repeat=repeat, start=start, echo=echo
            )
        if "build" in stages:
            echo(f"build: {events:,} and {10 * events:,} events, {repeat} repetitions")
            results["build"] = build.run(
                results["ingest"]["home"], events=events, repeat=repeat, start=start.date(), echo=echo
            )
        if "api" in stages:
            echo(f"api: {api.CLIENTS} clients for {sizes['api_duration_s']:.0f}s during a full build, then drill-downs")
            results["api"] = api.run(results["ingest"]["home"], duration_s=float(sizes["api_duration_s"]), echo=echo)
        if "sql" in stages:
            echo(f"sql: {sql.SESSIONS} psycopg sessions for {sizes['sql_duration_s']:.0f}s during a full build")
            results["sql"] = sql.run(results["ingest"]["home"], duration_s=float(sizes["sql_duration_s"]), echo=echo)
        if "groups" in stages:
            group_events = int(sizes["group_events"])
            echo(f"groups: {groups.GROUP_TOPIC} of {group_events:,} generated events, 1 vs 2 partition groups")
            results["groups"] = groups.run(workdir, events=group_events, repeat=repeat, start=start, echo=echo)
        if "freshness" in stages:
            echo(f"freshness: {sizes['rate']:,.0f} events/s for {sizes['duration_s']:.0f}s under dagster dev")
            results["freshness"] = freshness.run(
                workdir,
                rate=float(sizes["rate"]),
                duration_s=float(sizes["duration_s"]),
                settle_marts=not args.quick,
                echo=echo,
            )
        if "soak" in stages:
            echo(f"soak: {sizes['rate']:,.0f} events/s for {sizes['soak_duration_s']:.0f}s of `analytics-platform dev`")
            results["soak"] = soak.run(
                workdir, rate=float(sizes["rate"]), duration_s=float(sizes["soak_duration_s"]), echo=echo
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, sizes, stages, time.monotonic() - began, quick=args.quick)


def report(
    results: dict[str, Any], sizes: dict[str, float], stages: list[str], elapsed_s: float, *, quick: bool
) -> None:
    events = int(sizes["events"])
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "quick": quick,
        "repetitions": int(sizes["repeat"]),
        "stages": stages,
        "elapsed_s": round(elapsed_s, 1),
    }
    spreads: dict[str, dict[str, float]] = {}
    rows: list[tuple[str, Any, str]] = []

    def figure(key: str, values: list[float], label: str, note: str = "") -> None:
        spreads[key] = spread(values)
        figures[key] = spreads[key]["median"]
        rows.append((label, spreads[key], note))

    if "ingest" in results:
        reps = results["ingest"]["repetitions"]
        figures["ingest_events"] = events
        figure("ceiling_events_per_s", [r["ceiling_events_per_s"] for r in reps], "ceiling (events/s)", "baseline")
        figure("ingest_events_per_s", [r["events_per_s"] for r in reps], "platform ingest (events/s)")
        figure("ingest_ratio_to_ceiling", [r["ratio"] for r in reps], "  ratio to the ceiling", "target >= 0.65")
        figure("run_overhead_in_process_s", [r["run_overhead_s"] for r in reps], "  per-run overhead in process (s)")
        for stage in ("consume", "decode", "commit"):
            figure(f"ingest_{stage}_s", [r[f"{stage}_s"] for r in reps], f"  {stage}, all runs (s)")
        figure("ingest_runs", [r["runs"] for r in reps], "  runs")
        figure("ingest_process_peak_rss_mb", [r["peak_rss_mb"] for r in reps], "  peak RSS of that process (MiB)")
        figure("ingest_baseline_rss_mb", [r["baseline_rss_mb"] for r in reps], "  of which Dagster + imports (MiB)")
        small, large = results["ingest"]["memory_small"], results["ingest"]["memory_large"]
        figures["memory_events"] = int(sizes["memory_events"])
        figure(
            "ingest_peak_rss_mb",
            [r["peak_rss_mb"] for r in small],
            f"ingest run peak RSS, {events:,} backlog (MiB)",
            "largest run of the busiest topic",
        )
        figure(
            "ingest_peak_rss_large_backlog_mb",
            [r["peak_rss_mb"] for r in large],
            f"ingest run peak RSS, {int(sizes['memory_events']):,} backlog (MiB)",
            "bounded: same as above",
        )
    if "build" in results:
        build = results["build"]
        figure("build_full_1x_s", [r["seconds"] for r in build["full_small"]], f"full build, {events:,} events (s)")
        figure(
            "build_full_10m_s", [r["seconds"] for r in build["full_large"]], f"full build, {10 * events:,} events (s)"
        )
        figure(
            "build_scaling_10x",
            [b / spreads["build_full_1x_s"]["median"] for b in (r["seconds"] for r in build["full_large"])],
            "  10x input / 1x cost",
            "target <= ~10",
        )
        figure("build_full_peak_rss_mb", [r["peak_rss_mb"] for r in build["full_large"]], "  peak RSS at 10x (MiB)")
        figure("build_incremental_day_s", [r["seconds"] for r in build["day"]], "daily build of one new day (s)")
        figure(
            "incremental_to_full_ratio",
            [r["seconds"] / spreads["build_full_10m_s"]["median"] for r in build["day"]],
            "  ratio to the full build at 10x",
            "target <= 0.3",
        )
        figures["build_day_events"] = build["day_events"]
    if "api" in results:
        served = results["api"]
        figures.update({f"api_{name}": value for name, value in served.items()})
        during = f"{served['requests']:,} requests, 16 clients, during a full build: {served['build_overlapped']}"
        ms = {name: value * 1000 for name, value in served.items() if name.endswith("_s")}
        rows += [
            ("API metric page p50 (ms)", ms["p50_s"], during),
            ("API metric page p99 (ms)", ms["p99_s"], "target <= 50"),
            ("  in-process DuckDB p50 (ms)", ms["baseline_p50_s"], "baseline"),
            ("  in-process DuckDB p99 (ms)", ms["baseline_p99_s"], "baseline"),
            ("  ratio p99 API / in-process", ms["p99_s"] / ms["baseline_p99_s"], ""),
            ("API requests/s", served["requests_per_s"], f"{served['errors']} errors (target 0)"),
            ("drill-down by correlation id p50 (ms)", ms["drill_p50_s"], f"{served['raw_rows']:,} raw rows"),
            ("drill-down by correlation id p99 (ms)", ms["drill_p99_s"], "target <= 500"),
            ("  DuckDB iceberg_scan p50 (ms)", ms["drill_baseline_p50_s"], "baseline"),
            ("  DuckDB iceberg_scan p99 (ms)", ms["drill_baseline_p99_s"], "baseline"),
            ("  ratio p99 API / DuckDB", ms["drill_p99_s"] / ms["drill_baseline_p99_s"], ""),
        ]
    if "sql" in results:
        endpoint = results["sql"]
        figures.update({f"sql_{name}": value for name, value in endpoint.items()})
        during = f"{endpoint['queries']:,} queries, 8 sessions, during a full build: {endpoint['build_overlapped']}"
        ms = {name: value * 1000 for name, value in endpoint.items() if name.endswith("_s")}
        rows += [
            ("SQL endpoint DAU/funnel query p50 (ms)", ms["p50_s"], during),
            ("SQL endpoint DAU/funnel query p99 (ms)", ms["p99_s"], f"{endpoint['errors']} errors (target 0)"),
            ("  in-process DuckDB p50 (ms)", ms["baseline_p50_s"], "baseline"),
            ("  in-process DuckDB p99 (ms)", ms["baseline_p99_s"], "baseline"),
            ("  ratio p50 endpoint / in-process", ms["p50_s"] / ms["baseline_p50_s"], ""),
            ("SQL endpoint queries/s", endpoint["queries_per_s"], ""),
        ]
    if "groups" in results:
        reps = results["groups"]["repetitions"]
        figures["groups_events"] = results["groups"]["events"]
        one_topic = f"{results['groups']['events']:,} events of one topic, 6 partitions"
        one = [r["one_events_per_s"] for r in reps]
        figure("groups_one_events_per_s", one, "one topic, 1 group (events/s)", one_topic)
        figure("groups_two_events_per_s", [r["two_events_per_s"] for r in reps], "one topic, 2 groups (events/s)")
        figure("groups_ratio", [r["ratio"] for r in reps], "  ratio 2 groups / 1 group", "2 cores shared")
        figure(
            "groups_commits_retried",
            [r["two_commits_retried"] for r in reps],
            "  2 groups: commits on top of the other group",
            f"of {reps[0]['two_micro_batches']} micro-batches",
        )
    if "freshness" in results:
        fresh = results["freshness"]
        figures.update(
            {
                "freshness_rate": sizes["rate"],
                "freshness_duration_s": sizes["duration_s"],
                "freshness_events": fresh["events"],
                "freshness_not_landed_by_end": fresh["not_landed_by_end"],
                "freshness_not_in_mart_by_end": fresh["not_in_mart_by_end"],
                "freshness_raw_p50_s": fresh["raw_p50_s"],
                "freshness_raw_p95_s": fresh["raw_p95_s"],
                "freshness_raw_max_s": fresh["raw_max_s"],
                "freshness_raw_p95_by_minute_s": fresh["raw_p95_by_minute_s"],
                "freshness_mart_p50_s": fresh["mart_p50_s"],
                "freshness_mart_p95_s": fresh["mart_p95_s"],
                "freshness_mart_max_s": fresh["mart_max_s"],
                "freshness_live_refreshes": fresh["live_refreshes"],
                "freshness_live_refresh_p50_s": fresh["live_refresh_p50_s"],
                "freshness_live_refresh_p95_s": fresh["live_refresh_p95_s"],
                "freshness_live_refresh_phases_p50_s": fresh["live_refresh_phases_p50_s"],
                # A daemon-launched run: from the sensor's request to its step consuming (process start + code load).
                "run_overhead_s": fresh["runs"].get("ingest_*", {}).get("launch_s"),
                "freshness_runs": fresh["runs"],
            }
        )
        per_event = f"over {fresh['events']:,} events"
        if fresh["not_landed_by_end"] or fresh["not_in_mart_by_end"]:
            per_event += (
                f"; {fresh['not_landed_by_end']:,} not in raw and {fresh['not_in_mart_by_end']:,} not in the mart "
                "by the end (counted as lower bounds)"
            )
        rows += [
            ("produce -> raw p50 (s)", fresh["raw_p50_s"], per_event),
            ("produce -> raw p95 (s)", fresh["raw_p95_s"], "target <= 20"),
            ("produce -> raw max (s)", fresh["raw_max_s"], ""),
            ("produce -> fct_events_per_minute p50 (s)", fresh["mart_p50_s"], ""),
            ("produce -> fct_events_per_minute p95 (s)", fresh["mart_p95_s"], "target <= 60"),
            ("live facts refresh p50 (s)", fresh["live_refresh_p50_s"], f"over {fresh['live_refreshes']} refreshes"),
            ("live facts refresh p95 (s)", fresh["live_refresh_p95_s"], ""),
            *((f"  phase {phase} p50 (s)", value, "") for phase, value in fresh["live_refresh_phases_p50_s"].items()),
        ]
        for job, timing in fresh["runs"].items():
            rows.append(
                (f"{job} run: request -> step start (s)", timing["launch_s"], f"median of {timing['runs']} runs")
            )
            rows.append((f"{job} run: step start -> end (s)", timing["work_s"], ""))
            for step, seconds in timing.get("steps_s", {}).items():
                rows.append((f"  step {step} (s)", seconds, ""))
        by_minute = ", ".join(f"{value:.1f}" for value in fresh["raw_p95_by_minute_s"])
        commits = ", ".join(f"{value:.2f}" for value in fresh["commit_s_by_minute"])
        figures["freshness_commit_s_by_minute"] = fresh["commit_s_by_minute"]
    if "soak" in results:
        soaked = results["soak"]
        figures.update({f"soak_{name}": value for name, value in soaked.items() if name != "samples"})
        figures["soak_samples"] = soaked["samples"]
        exactly_once = (
            f"{soaked['not_landed']:,} not landed, {soaked['landed_twice']:,} twice, "
            f"{soaked['rows_without_message']:,} without a message (target 0, 0, 0)"
        )
        windows = soaked["raw_p95_by_window_s"]
        first_commit, last_commit = soaked["commit_median_first_s"], soaked["commit_median_last_s"]
        first_rss, last_rss = soaked["ingest_rss_first_mb"], soaked["ingest_rss_last_mb"]
        files = soaked["files_per_partition_by_sample"]
        rows += [
            ("soak: events produced and read back", soaked["events"], exactly_once),
            ("  produce -> raw p50 (s)", soaked["raw_p50_s"], ""),
            ("  produce -> raw p95 (s)", soaked["raw_p95_s"], ""),
            (
                f"  worst {soaked['window_s']:.0f}-s window's p95 (s)",
                max(windows) if windows else None,
                "target <= 10",
            ),
            ("  trend of the windows' p95 (s per hour)", soaked["raw_p95_slope_s_per_hour"], "target ~0, not up"),
            ("  median commit, first sixth (s)", first_commit, f"{soaked['commits']:,} micro-batches"),
            ("  median commit, last sixth (s)", last_commit, ""),
            (
                "  ratio last / first",
                last_commit / first_commit if first_commit and last_commit else None,
                "target <= 1.5",
            ),
            ("  median commit CPU, first sixth (s)", soaked["commit_cpu_median_first_s"], "what the commit costs"),
            ("  median commit CPU, last sixth (s)", soaked["commit_cpu_median_last_s"], "without waiting for a core"),
            ("  ingest RSS, first sixth (MiB)", first_rss, f"largest process of {soaked['ingest_runs_seen']} runs"),
            ("  ingest RSS, last sixth (MiB)", last_rss, ""),
            ("  ratio last / first", last_rss / first_rss if first_rss and last_rss else None, "target <= 1.2"),
            ("  data files per partition, most at any sample", max(files) if files else None, "bounded"),
            ("  data files per partition, at the end", files[-1] if files else None, ""),
        ]
    figures["spread"] = spreads
    print(
        f"\n{figures['cpu_model']}, {figures['cpu_count']} cores; commit {figures['commit']}; {elapsed_s / 60:.1f} min"
    )
    print(table(rows))
    if "freshness" in results:
        print(f"raw p95 per minute of the run (s): {by_minute}")
        print(f"median raw commit per minute of the run (s): {commits}")
    if "soak" in results:
        print(f"soak: raw p95 per window (s): {', '.join(f'{v:.1f}' for v in results['soak']['raw_p95_by_window_s'])}")
        commits = ", ".join(f"{value:.2f}" for value in results["soak"]["commit_median_by_window_s"])
        print(f"soak: median commit per window (s): {commits}")
        cpu = ", ".join(f"{value:.3f}" for value in results["soak"]["commit_cpu_median_by_window_s"])
        print(f"soak: median commit CPU per window (s): {cpu}")
        print(f"soak: most files per partition per sample: {results['soak']['files_per_partition_by_sample']}")
        busy = ", ".join(f"{value:.0%}" for value in results["soak"]["cpu_busy_by_sample"])
        print(f"soak: machine CPU busy per sample: {busy}")
        jobs = ", ".join(f"{job} {seconds:,.0f}" for job, seconds in results["soak"]["cpu_s_by_job"].items())
        print(f"soak: CPU seconds by job: {jobs}")
        roles = ", ".join(f"{role} {seconds:,.0f}" for role, seconds in results["soak"]["cpu_s_by_role"].items())
        print(f"soak: CPU seconds of the other processes: {roles}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
