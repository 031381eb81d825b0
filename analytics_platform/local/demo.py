"""``make demo``: the whole platform on one machine, from an empty home to a printed summary, in one command."""

from __future__ import annotations

import importlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable

from analytics_platform.exceptions import PlatformError
from analytics_platform.kafka import broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.producer import producer_options, publish
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_tables
from analytics_platform.local import report
from analytics_platform.local.instance import get_instance, prepare_dagster_home
from analytics_platform.local.orchestration import build_marts, tick_ingest_sensors
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events

Echo = Callable[[str], None]


def run_demo(settings: Settings, *, events: int, days: int, seed: int, echo: Echo) -> None:
    """Fresh demo home, broker, stream, sensor-driven ingestion, dbt build, summary; stops what it started.

    The sensors are ticked in this process rather than by the daemon: the same sensors, jobs and run
    keys, without ~10 s of process start per run, so the demo measures ingestion, not launching.
    """
    demo_home = settings.home / "demo"
    shutil.rmtree(demo_home, ignore_errors=True)
    os.environ["PLATFORM_HOME"] = str(demo_home)  # the daemon, its runs and the resources read it
    settings = get_settings()
    started = time.monotonic()

    def step(message: str) -> None:
        echo(f"[{time.monotonic() - started:6.1f}s] {message}")

    started_broker = False
    try:
        if settings.kafka_bootstrap_servers is None:
            step(f"starting the embedded broker on {settings.bootstrap_servers}")
            broker.start(settings)
            started_broker = True
        create_topics(settings, settings.topic_partitions)
        ensure_tables(load_catalog(settings), settings)
        prepare_dagster_home(settings)

        step(f"generating {events:,} activity events plus the catalog and user profiles over {days} days (seed {seed})")
        stream = generate_events(events, seed=seed, days=days, reference_data=True)
        expected = Counter(event["event_type"] for event in stream)
        total = len(stream)
        produce_started = time.monotonic()
        publish(
            stream,
            settings,
            progress=lambda n: step(f"  produced {n:,}/{len(stream):,}") if n % 50_000 == 0 else None,
            **producer_options(settings),
        )
        step(
            f"produced {len(stream):,} events in {time.monotonic() - produce_started:.1f}s: "
            + ", ".join(f"{name} {count:,}" for name, count in sorted(expected.items()))
        )

        step("loading the Dagster definitions (dbt manifest, assets, sensors)")
        importlib.import_module("analytics_platform.definitions")  # once, before the ingestion clock starts

        step("ticking the ingest sensors: each tick plans micro-batches and runs them in this process")
        instance = get_instance(settings)
        catalog = load_catalog(settings)
        ingest_started = last_run_done = time.monotonic()
        runs = 0
        while True:
            ticked = tick_ingest_sensors(settings, instance, log_level="WARNING")
            failed = [run for run in ticked if not run.success]
            if failed:
                raise PlatformError(
                    f"ingest run(s) failed: {[run.run_key for run in failed]}; their logs are in the Dagster "
                    f"UI: PLATFORM_HOME={settings.home} make dev"
                )
            if ticked:
                last_run_done = time.monotonic()
            runs += len(ticked)
            landed, dead = report.landed_counts(catalog, settings)
            step(f"  landed {sum(landed.values()) + dead:,}/{total:,} events ({runs} runs)")
            if not ticked:
                break
        ingest_s = last_run_done - ingest_started
        step(
            f"ingested {total:,} events in {ingest_s:.1f}s through {runs} sensor-requested runs "
            f"({total / ingest_s:,.0f} events/s, decode and Iceberg commits included)"
        )
        if sum(landed.values()) + dead != total:
            raise PlatformError(
                f"{sum(landed.values()):,} rows and {dead:,} dead letters landed for {total:,} "
                f"produced events; per type landed {landed}, produced {dict(expected)}"
            )

        step("building the dbt models through Dagster")
        build_s = build_marts(settings, log_path=settings.home / "logs" / "dbt-build.log")
        step(f"marts built and published in {build_s:.1f}s")
        echo("")
        echo(report.render(report.collect(catalog, settings)))
        echo("")
        step(
            f"demo finished; its state stays in {settings.home} (`analytics-platform reset --yes` with "
            "that PLATFORM_HOME deletes it)"
        )
    finally:
        if started_broker:
            broker.stop(settings)
