"""Smoke tests of the installed ``analytics-platform`` command, run as a user would run it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.kafka.reader import log_bounds
from analytics_platform.settings import get_settings
from analytics_platform.sim.generator import generate_events

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "analytics-platform")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_help_lists_every_command() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("broker", "topics", "generate", "ingest", "build", "demo", "dev", "offsets", "summary"):
        assert command in result.stdout
    assert "--events" in cli("generate", "--help").stdout


def test_broker_start_status_stop() -> None:
    settings = get_settings()
    assert cli("broker", "status").returncode == 1  # not running yet, says so
    started = cli("broker", "start")
    try:
        assert started.returncode == 0, started.stderr
        assert settings.bootstrap_servers in started.stdout
        status = cli("broker", "status")
        assert status.returncode == 0 and f"bootstrap servers: {settings.bootstrap_servers}" in status.stdout
        assert "already" not in cli("broker", "start").stderr  # idempotent
    finally:
        stopped = cli("broker", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert cli("broker", "status").returncode == 1
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", settings.broker_port)) != 0  # nothing left listening


def test_broker_start_on_a_taken_port_says_which_setting_to_change() -> None:
    settings = get_settings()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.broker_port))
        squatter.listen()
        result = cli("broker", "start")
    assert result.returncode == 1
    assert f"port {settings.broker_port} is already in use" in result.stderr
    assert "PLATFORM_BROKER_PORT" in result.stderr


def test_generate_produces_exactly_the_requested_events() -> None:
    assert cli("broker", "start").returncode == 0
    try:
        result = cli("generate", "--events", "2500", "--seed", "5", "--days", "2")
        assert result.returncode == 0, result.stderr
        expected = len(generate_events(2_500, seed=5, days=2, reference_data=True))  # + catalog and profiles
        assert expected > 2_500 and f"produced {expected:,} events" in result.stdout
        settings = get_settings()
        total = sum(bounds.end for topic in event_topics() for bounds in log_bounds(settings, topic).values())
        assert total == expected
    finally:
        cli("broker", "stop")


def test_unreachable_broker_gives_an_actionable_error() -> None:
    result = cli("topics", "create")
    assert result.returncode == 1
    assert "analytics-platform broker start" in result.stderr


def test_generate_ingest_build_summary_and_offsets_from_the_shell() -> None:
    assert cli("broker", "start").returncode == 0
    try:
        generate = cli("generate", "--events", "3000", "--seed", "8", "--days", "2", "--no-reference-data")
        assert generate.returncode == 0, generate.stderr
        ingest = cli("ingest")
        assert ingest.returncode == 0, ingest.stderr
        assert "events.user_visit: caught up" in ingest.stdout
        again = cli("ingest", "--topic", "events.purchase")
        assert "events.purchase: caught up (0 rows this pass)" in again.stdout  # nothing new, nothing landed
        build = cli("build")
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
        summary = cli("summary")
        assert summary.returncode == 0, summary.stderr
        assert re.search(r"total +3,000\n", summary.stdout) and re.search(r"raw\.dead_letter +0\n", summary.stdout)
        offsets = cli("offsets", "show")
        assert offsets.returncode == 0 and "events.checkout: next offsets {0:" in offsets.stdout
    finally:
        cli("broker", "stop")
