"""``make dev``: broker, live generator and ``dagster dev`` until Ctrl-C, then all of them stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pyiceberg.catalog import Catalog

from analytics_platform.contracts.envelope import event_topics, event_type_for_topic
from analytics_platform.exceptions import PlatformError
from analytics_platform.kafka import broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import reset_offsets, stored_offsets
from analytics_platform.lakehouse.tables import ensure_raw_table, ensure_tables
from analytics_platform.local.instance import prepare_dagster_home
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = REPO_ROOT / "workspace.yaml"
BIN = Path(sys.executable).parent
Echo = Callable[[str], None]


def run_dev(settings: Settings, *, rate: float, port: int, echo: Echo) -> None:
    """Broker, live generator and ``dagster dev`` until Ctrl-C or SIGTERM; then stop all of them."""
    prepare_dagster_home(settings)
    processes: list[subprocess.Popen[bytes]] = []
    started_broker = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # even if this process was started with SIGINT ignored
    try:
        if settings.kafka_bootstrap_servers is None and not broker.status(settings).running:
            broker.start(settings)
            started_broker = True
        create_topics(settings.bootstrap_servers, settings.topic_partitions)
        catalog = load_catalog(settings)
        ensure_tables(catalog, settings)
        if started_broker:
            _continue_after_fresh_broker(settings, catalog, echo)
        logs = settings.home / "logs"
        # This venv's tools first: dagster-dbt's `dbt parse` (of a stale manifest) looks for `dbt` on PATH.
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        processes.append(
            spawn(
                [sys.executable, "-m", "analytics_platform.cli", "generate", "--live", "--rate", str(rate)],
                logs / "generator.log",
                env=env,
            )
        )
        processes.append(
            spawn(
                [str(BIN / "dagster"), "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)],
                logs / "dagster-dev.log",
                env=env,
                cwd=REPO_ROOT,
            )
        )
        echo(f"broker: {settings.bootstrap_servers}; generator: {rate:g} events/s ({logs / 'generator.log'})")
        echo(f"Dagster UI: http://127.0.0.1:{port}  (logs: {logs / 'dagster-dev.log'}); Ctrl-C stops everything")
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        failed = next(process for process in processes if process.poll() is not None)
        raise PlatformError(f"{failed.args!r} exited with code {failed.returncode}; see {logs}")
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        for process in reversed(processes):
            stop_group(process)
        if started_broker:
            broker.stop(settings)
        echo("stopped")


def _continue_after_fresh_broker(settings: Settings, catalog: Catalog, echo: Echo) -> None:
    """A freshly started broker has an empty log; say so and continue from it, visibly in history."""
    for topic in event_topics():
        table = ensure_raw_table(catalog, settings, event_type_for_topic(topic))
        stored = stored_offsets(table, topic)
        if any(stored.next_offsets.values()):
            reset_offsets(
                table,
                topic,
                dict.fromkeys(stored.next_offsets, 0),
                reason="make dev started a new (empty) embedded broker",
            )
            echo(
                f"{topic}: the embedded broker started empty; rows landed before stay in raw tables and "
                "ingestion continues from offset 0 of the new log (recorded as an offsets-reset snapshot)"
            )
