"""``make dev``: broker, live generator and ``dagster dev`` until Ctrl-C, then all of them stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

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


# A service that keeps dying is a bug to look at, not something to restart forever.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
# A service that was healthy and then fails its health check this long is restarted (a liveness probe).
UNHEALTHY_AFTER_S = 30.0
SUPERVISE_EVERY_S = 2.0
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"


def webserver_graphql(port: int, query: str) -> dict[str, Any] | None:
    """The ``data`` of the Dagster webserver's answer to ``query`` (None while it does not answer)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, Any] | None = json.loads(response.read())["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data


def api_answers(host: str, port: int) -> bool | None:
    """Whether the serving API answers its liveness probe (None: nothing listens yet)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return None


def sql_answers(host: str, port: int) -> bool | None:
    """Whether the SQL endpoint starts a Postgres handshake: an SSL request answered "N" (None: nothing
    listens yet). No login: a liveness probe needs no key."""
    try:
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(struct.pack("!ii", 8, 80877103))
            return connection.recv(1) == b"N"
    except OSError:
        return None


def code_locations_loaded(port: int) -> bool | None:
    """Whether ``dagster dev``'s webserver reports every code location loaded (False: one failed to load,
    e.g. its code server died; None: the webserver does not answer)."""
    data = webserver_graphql(port, LOCATIONS)
    try:
        entries = data["workspaceOrError"]["locationEntries"] if data else None
    except (KeyError, TypeError):
        return None
    if entries is None:
        return None
    return bool(entries) and all(
        (entry["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation" for entry in entries
    )


@dataclass
class Service:
    """A child process ``make dev`` keeps running: restarted (after its process group is cleared) if it
    dies, or if its ``health`` check, once passed, keeps failing for UNHEALTHY_AFTER_S."""

    name: str
    command: list[str]
    log: Path
    cwd: Path | None = None
    health: Callable[[], bool | None] | None = None
    env: dict[str, str] | None = None  # None: this process's environment
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    healthy_once: bool = False
    unhealthy_since: float | None = None

    def start(self) -> None:
        self.process = spawn(self.command, self.log, env=self.env, cwd=self.cwd)
        self.healthy_once, self.unhealthy_since = False, None

    def supervise(self, echo: Echo) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            self._restart(echo, f"exited with code {self.process.returncode}")
        elif self.health is not None:
            healthy = self.health()
            now = time.monotonic()
            if healthy:
                self.healthy_once, self.unhealthy_since = True, None
            elif self.healthy_once:
                self.unhealthy_since = self.unhealthy_since or now
                if now - self.unhealthy_since >= UNHEALTHY_AFTER_S:
                    self._restart(echo, f"failed its health check for {UNHEALTHY_AFTER_S:.0f}s")

    def _restart(self, echo: Echo, why: str) -> None:
        assert self.process is not None
        stop_group(self.process)  # with what it started: run workers, code servers
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(self.restarts) > MAX_RESTARTS:
            raise PlatformError(
                f"{self.name} needed {len(self.restarts)} restarts within {RESTART_WINDOW_S:.0f}s (last: {why}); "
                f"see {self.log}"
            )
        echo(f"{self.name} {why}; restarting it (see {self.log})")
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


def run_dev(settings: Settings, *, rate: float, port: int, echo: Echo) -> None:
    """Broker, live generator, ``dagster dev`` and the serving API until Ctrl-C or SIGTERM; then stop all.

    A service that dies (``dagster dev`` when its daemon or webserver is killed, say) or whose code
    location stops loading (its code server was killed) is restarted, and what its process group left
    behind is killed first: runs that died with it are failed by run monitoring once their heartbeats
    stop, and their sensors request the work again. ``rate=0`` runs
    no generator (produce your own events)."""
    prepare_dagster_home(settings)
    services: list[Service] = []
    started_broker = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # even if this process was started with SIGINT ignored
    try:
        if settings.kafka_bootstrap_servers is None and not broker.status(settings).running:
            broker.start(settings)
            started_broker = True
        create_topics(settings, settings.topic_partitions)
        catalog = load_catalog(settings)
        ensure_tables(catalog, settings)
        if started_broker:
            _continue_after_fresh_broker(settings, catalog, echo)
        logs = settings.home / "logs"
        if rate > 0:
            generate = [sys.executable, "-m", "analytics_platform.cli", "generate", "--live", "--rate", str(rate)]
            services.append(Service("the generator", generate, logs / "generator.log"))
        dagster_dev = [str(BIN / "dagster"), "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)]
        services.append(
            Service(
                "dagster dev",
                dagster_dev,
                logs / "dagster-dev.log",
                cwd=REPO_ROOT,
                health=lambda: code_locations_loaded(port),  # a dead code server is not restarted by dagster dev
            )
        )
        serve = [sys.executable, "-m", "analytics_platform.cli", "serve"]
        api_host, api_port = settings.api_host, settings.api_port
        # The API links runs in this Dagster UI and launches replays on its webserver.
        api_env = {"PLATFORM_DAGSTER_UI_URL": f"http://127.0.0.1:{port}"} | dict(os.environ)
        services.append(
            Service("the API", serve, logs / "api.log", health=lambda: api_answers(api_host, api_port), env=api_env)
        )
        sql = [sys.executable, "-m", "analytics_platform.cli", "sql"]
        sql_host, sql_port = settings.sql_host, settings.sql_port
        services.append(
            Service("the SQL endpoint", sql, logs / "sql.log", health=lambda: sql_answers(sql_host, sql_port))
        )
        exporter = [sys.executable, "-m", "analytics_platform.cli", "exporter"]
        exporter_host, exporter_port = settings.exporter_host, settings.exporter_port
        services.append(
            Service(
                "the metrics exporter",
                exporter,
                logs / "exporter.log",
                health=lambda: api_answers(exporter_host, exporter_port),  # its /healthz, like the API's
            )
        )
        for service in services:
            service.start()
        generator = f"{rate:g} events/s ({logs / 'generator.log'})" if rate > 0 else "off (--rate 0)"
        echo(f"broker: {settings.bootstrap_servers}; generator: {generator}")
        echo(f"Dagster UI: http://127.0.0.1:{port}  (logs: {logs / 'dagster-dev.log'})")
        echo(
            f"API: http://{api_host}:{api_port}/docs  (logs: {logs / 'api.log'}); a key: "
            f"{BIN / 'analytics-platform'} api-key create me --role operator"
        )
        echo(
            f"SQL: psql postgresql://<key name>@{sql_host}:{sql_port}/warehouse, the key as password "
            f"(an analyst key; logs: {logs / 'sql.log'})"
        )
        echo(
            f"metrics: http://{exporter_host}:{exporter_port}/metrics  (logs: {logs / 'exporter.log'}); "
            "`make ops` runs Prometheus and Alertmanager on them"
        )
        echo("Ctrl-C stops everything")
        while True:
            time.sleep(SUPERVISE_EVERY_S)
            for service in services:
                service.supervise(echo)
    except KeyboardInterrupt:
        echo("stopping ...")
    finally:
        for service in reversed(services):
            service.stop()
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
