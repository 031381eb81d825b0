"""SQL endpoint stage: the DAU and funnel queries through psycopg over the Postgres-wire endpoint, with 8
concurrent sessions while a full marts build runs and publishes, beside the same queries in-process.

Runs on the build stage's home. The endpoint is ``analytics-platform sql`` on a free port; each client
thread opens a session (as a BI tool's connection pool does, it reconnects every 20 queries, so
sessions also open on the newly published build) and runs the two queries in turn. The baseline is the
same SQL on a read-only DuckDB connection in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import free_port, full_build_process, isolate, percentile, run_clients, serving_broker

SESSIONS = 8
QUERIES_PER_SESSION = 20
QUERIES = (
    "select activity_date, dau, wau, mau from marts.fct_daily_active_users order by activity_date",
    "select activity_date, category, visitors, cart_users, checkout_users, purchasers from marts.fct_funnel_daily "
    "where category = %s order by activity_date",
)
PARAMETERS: tuple[tuple[str, ...], ...] = ((), ("all",))


def run(home: Path, *, duration_s: float, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    import psycopg

    from analytics_platform.serving.access import KeyStore, Role
    from analytics_platform.settings import get_settings
    from analytics_platform.warehouse.connections import connect_marts

    port = free_port()
    isolate(home, free_port())
    os.environ["PLATFORM_SQL_PORT"] = str(port)
    settings = get_settings()
    key = KeyStore(settings.api_keys_path).create(f"bench-sql-{port}", Role.analyst, None)
    url = f"postgresql://bench-sql-{port}:{key}@127.0.0.1:{port}/warehouse"
    with serving_broker():  # the build under load ends by sending the metrics topic
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "analytics-platform"), "sql"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    psycopg.connect(url, connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

            baseline: list[float] = []
            with connect_marts(settings) as con:
                for _ in range(20):
                    for sql, parameters in zip(QUERIES, PARAMETERS, strict=True):
                        started = time.perf_counter()
                        con.execute(sql.replace("%s", "?"), list(parameters)).fetchall()
                        baseline.append(time.perf_counter() - started)

            build = full_build_process()
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            stop = time.monotonic() + duration_s

            def client(index: int) -> None:
                turn = index
                while time.monotonic() < stop:
                    try:
                        with psycopg.connect(url) as con:
                            for _ in range(QUERIES_PER_SESSION):
                                if time.monotonic() >= stop:
                                    break
                                sql, parameters = QUERIES[turn % 2], PARAMETERS[turn % 2]
                                started = time.perf_counter()
                                con.execute(sql, parameters).fetchall()
                                with lock:
                                    latencies.append(time.perf_counter() - started)
                                turn += 1
                    except psycopg.Error as error:
                        with lock:
                            errors.append(str(error))

            elapsed = run_clients(client, SESSIONS)
            build_overlapped = build.poll() is None
            build.wait()
            echo(
                f"  {len(latencies):,} queries in {elapsed:.0f}s, {len(errors)} errors; "
                f"the build ran throughout: {build_overlapped}"
            )
        finally:
            server.terminate()
            server.wait(30)
    return {
        "queries": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "queries_per_s": len(latencies) / elapsed,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "baseline_p50_s": percentile(baseline, 50),
        "baseline_p99_s": percentile(baseline, 99),
        "build_overlapped": build_overlapped,
    }
