"""``analytics-platform doctor`` against real parts: every line ok with a broker, the catalog and a Dagster daemon
running the code location's sensors; the broker's lines failing, within seconds, once it is stopped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_tables
from analytics_platform.local.instance import prepare_dagster_home
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.operations.doctor import Finding, diagnose, expected_sensors
from analytics_platform.settings import Settings
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
NAMES = ["broker", "topics", "schema registry", "catalog", "dagster storage", "daemon", "sensors", "disk"]


@pytest.fixture
def daemon(broker: Settings) -> Iterator[Settings]:
    """A Dagster daemon on the test's instance, loading the platform's code location as `make dev` does."""
    ensure_tables(load_catalog(broker), broker)
    prepare_dagster_home(broker)
    process = spawn(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        broker.home / "logs" / "daemon.log",
        env=dict(os.environ),
        cwd=REPO,
    )
    try:
        yield broker
    finally:
        stop_group(process, timeout_s=2)  # its graceful shutdown takes ~12 s; nothing of it is under test


def doctor(settings: Settings) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "PLATFORM_HOME": str(settings.home), "PLATFORM_BROKER_PORT": str(settings.broker_port)}
    started = time.monotonic()
    result = subprocess.run([str(BIN / "analytics-platform"), "doctor"], capture_output=True, text=True, env=env)
    return result, time.monotonic() - started


def verdicts(output: str) -> dict[str, str]:
    """name -> ok / FAIL, from the command's lines (a fix line starts with blanks)."""
    return {match[2]: match[1] for match in re.finditer(r"^(ok|FAIL) +(\S+(?: \S+)?)  ", output, re.MULTILINE)}


def test_doctor_is_all_ok_on_a_running_platform_and_names_the_broker_when_it_stops(daemon: Settings) -> None:
    def all_ok() -> list[Finding] | None:
        findings = diagnose(daemon)
        return findings if all(finding.ok for finding in findings) else None

    # The daemon beats at once; its sensors tick once the code location has loaded.
    wait_for(all_ok, 180, "doctor to find every part ok", poll_s=2)
    result, _ = doctor(daemon)
    assert result.returncode == 0, result.stdout
    assert verdicts(result.stdout) == dict.fromkeys(NAMES, "ok"), result.stdout
    assert f"127.0.0.1:{daemon.broker_port}: 1 broker(s) answered" in result.stdout
    assert f"{len(event_types())} event topics, 3 partitions each" in result.stdout
    assert f"{len(expected_sensors())} sensors running" in result.stdout

    embedded_broker.stop(daemon)
    result, seconds = doctor(daemon)
    assert result.returncode == 1
    assert seconds < 20  # a dead broker fails within seconds (most of it is the CLI's start)
    found = verdicts(result.stdout)
    assert (found["broker"], found["topics"]) == ("FAIL", "FAIL"), result.stdout
    assert {name for name, verdict in found.items() if verdict == "ok"} >= {
        "schema registry",
        "catalog",
        "dagster storage",
        "daemon",
        "disk",
    }, result.stdout  # the sensors may fail too: the ingest sensors' ticks cannot reach the broker
    assert f"nothing accepts connections at 127.0.0.1:{daemon.broker_port}" in result.stdout
    assert "fix: start the embedded broker with `analytics-platform broker start`" in result.stdout
    assert "not checked: the broker is unreachable" in result.stdout
