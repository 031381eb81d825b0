"""Serving API stage: metric pages with 16 concurrent clients while a full marts build runs, and the
drill-down by correlation id over the 10x raw tables; each beside the same query in-process in DuckDB.

Runs on the build stage's home (raw tables at 10x the ingest stage's events, marts published). The API
is ``analytics-platform serve`` (uvicorn, one worker) on a free port; clients are threads with their own
HTTP connection, each asking for one page (limit 100) of a metric chosen round-robin. Meanwhile a full
build (``build_marts``) runs in a worker process and publishes a new build, so the API follows a swap
under load. The baseline is the same page's SQL on a read-only DuckDB connection in this process.
"""

from __future__ import annotations

import http.client
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import free_port, full_build_process, isolate, percentile, run_clients, serving_broker

CLIENTS = 16
PAGE_METRICS = (
    "daily_active_users",
    "events_per_hour",
    "revenue_daily",
    "funnel_daily",
    "category_conversion_daily",
    "cohort_retention",
    "events_per_minute",
    "sessions",
)
DRILL_LOOKUPS = 200  # a p99 of 50 lookups is their maximum: one cold lookup decides it


def _get(connection: http.client.HTTPConnection, path: str, key: str) -> tuple[int, float]:
    started = time.perf_counter()
    connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    response = connection.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def run(home: Path, *, duration_s: float, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.snapshots import row_count
    from analytics_platform.serving.access import KeyStore, Role
    from analytics_platform.settings import get_settings
    from analytics_platform.warehouse.connections import connect_marts, duckdb_config, install_extensions

    port = free_port()
    isolate(home, free_port())
    os.environ["PLATFORM_API_PORT"] = str(port)
    settings = get_settings()
    key = KeyStore(settings.api_keys_path).create(f"bench-{port}", Role.analyst, None)
    with serving_broker():  # the build under load ends by sending the metrics topic
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "analytics-platform"), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if _get(http.client.HTTPConnection("127.0.0.1", port, timeout=5), "/healthz", key)[0] == 200:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

            # Baseline: each metric's first page in process, on the published build.
            from analytics_platform.serving.metrics import METRICS, Scope, read_page

            baseline: list[float] = []
            with connect_marts(settings) as con:
                for _ in range(20):
                    for name in PAGE_METRICS:
                        started = time.perf_counter()
                        read_page(con, METRICS[name], {}, Scope(), None, 100)
                        baseline.append(time.perf_counter() - started)

            # Load: CLIENTS threads for duration_s while a full build runs and publishes.
            build = full_build_process()
            latencies: list[float] = []
            errors: list[int] = []
            lock = threading.Lock()
            stop = time.monotonic() + duration_s

            def client(index: int) -> None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                turn = index
                while time.monotonic() < stop:
                    status, seconds = _get(connection, f"/v1/metrics/{PAGE_METRICS[turn % len(PAGE_METRICS)]}", key)
                    turn += 1
                    with lock:
                        latencies.append(seconds)
                        if status != 200:
                            errors.append(status)

            elapsed = run_clients(client, CLIENTS)
            build_overlapped = build.poll() is None
            build.wait()
            echo(
                f"  {len(latencies):,} requests in {elapsed:.0f}s, {len(errors)} errors; "
                f"the build ran throughout: {build_overlapped}"
            )

            # Drill-down by correlation id: API vs a DuckDB iceberg_scan with the same filter, in process.
            catalog = load_catalog(settings)
            purchases = catalog.load_table("raw.purchase").scan(selected_fields=("correlation_id",)).to_arrow()
            ids = random.Random(7).sample(purchases.column("correlation_id").to_pylist(), DRILL_LOOKUPS)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            drill = [_get(connection, f"/v1/events?correlation_id={cid}", key)[1] for cid in ids]
            install_extensions(settings)
            import duckdb

            direct: list[float] = []
            with duckdb.connect(config=duckdb_config(settings)) as con:
                con.execute("load iceberg")
                locations = [catalog.load_table(f"raw.{name}").metadata_location for name in event_types()]
                for cid in ids:
                    started = time.perf_counter()
                    for location in locations:
                        con.execute(
                            "select * from iceberg_scan(?) where correlation_id = ?", [location, cid]
                        ).fetchall()
                    direct.append(time.perf_counter() - started)
            raw_rows = sum(row_count(catalog.load_table(f"raw.{name}")) for name in event_types())
        finally:
            server.terminate()
            server.wait(30)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": len(latencies) / elapsed,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "baseline_p50_s": percentile(baseline, 50),
        "baseline_p99_s": percentile(baseline, 99),
        "build_overlapped": build_overlapped,
        "drill_p50_s": percentile(drill, 50),
        "drill_p99_s": percentile(drill, 99),
        "drill_baseline_p50_s": percentile(direct, 50),
        "drill_baseline_p99_s": percentile(direct, 99),
        "raw_rows": raw_rows,
    }
