"""Running ``analytics-platform dev`` from a test as a user would: a real broker, ``dagster dev`` with its
daemon and sensors, and ways to look at it from outside (the GraphQL API, the process table)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from analytics_platform.local.dev import webserver_graphql as graphql
from tests.helpers import free_port, wait_for

CLI = str(Path(sys.executable).parent / "analytics-platform")
ASSET_GRAPH = "{ assetNodes { assetKey { path } } }"


def processes_with_home(home: Path) -> list[int]:
    """Every process started with ``PLATFORM_HOME=home`` in its environment (other than this one)."""
    marker = f"PLATFORM_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def parent_of(pid: int) -> int:
    status = (Path("/proc") / str(pid) / "status").read_text()
    match = re.search(r"^PPid:\s+(\d+)$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = (Path("/proc") / str(pid) / "stat").read_text().split(")")[-1].split()[0]
    return state != "Z"


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the run's worker reported ("Started process for run (pid: N)")."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if match := re.search(r"Started process for run \(pid: (\d+)\)", entry.message or ""):
            return int(match.group(1))
    return None


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    port: int
    api_port: int
    sql_port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text()[-4000:]


@contextlib.contextmanager
def running_dev(home: Path, *args: str) -> Iterator[Dev]:
    """``analytics-platform dev`` (PATH without the venv, the API and SQL endpoint on free ports), up until
    its webserver serves the assets; stopped with Ctrl-C afterwards, leaving no process behind."""
    port, api_port, sql_port = free_port(), free_port(), free_port()
    log = home.parent / "dev.log"
    env = {
        **os.environ,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PLATFORM_API_PORT": str(api_port),
        "PLATFORM_SQL_PORT": str(sql_port),
        "PLATFORM_EXPORTER_PORT": str(free_port()),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [CLI, "dev", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    dev = Dev(process, port, api_port, sql_port, log)
    try:
        wait_for(lambda: (graphql(port, ASSET_GRAPH) or {}).get("assetNodes"), 240, "the Dagster webserver")
        yield dev
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        process.wait(120)
    assert process.returncode == 0, dev.output()
    assert processes_with_home(home) == []  # broker, generator, webserver, daemon, code servers, runs
