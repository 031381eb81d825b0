"""``make dev`` smoke test: broker + live generator + ``dagster dev`` come up, show the lineage, ingest,
and leave no process behind when stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from analytics_platform.contracts.envelope import event_types
from tests.conftest import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "analytics-platform")

ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
SENSORS = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status } } } } } }"""
MATERIALIZATIONS = """{ assetOrError(assetKey: {path: %s}) {
    ... on Asset { assetMaterializations(limit: 1) { runId } } } }"""


def graphql(port: int, query: str) -> dict[str, Any] | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["data"]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def processes_with_home(home: Path) -> list[int]:
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


def test_make_dev_serves_the_lineage_runs_sensors_and_stops_cleanly(isolated_platform: Path) -> None:
    port = free_port()
    log = (isolated_platform.parent / "dev.log").open("w")
    dev = subprocess.Popen(
        [CLI, "dev", "--rate", "50", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:

        def asset_graph() -> dict[str, set[str]] | None:
            data = graphql(port, ASSET_GRAPH)
            nodes = (data or {}).get("assetNodes") or []
            return {
                "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes
            } or None

        deps = wait_for(asset_graph, 180, "the Dagster webserver to serve the code location's assets")
        for event_type in ("user_visit", "add_to_cart", "checkout", "purchase"):
            assert f"kafka/events_{event_type}" in deps[f"raw/{event_type}"]
        assert "raw/user_visit" in deps["staging/stg_user_visits"]
        assert "staging/stg_user_visits" in deps["intermediate/int_events_unioned"]
        assert "intermediate/int_events_unioned" in deps["marts/fct_daily_active_users"]
        assert "intermediate/int_events_unioned" in deps["marts/fct_events_per_minute"]

        sensors = {
            sensor["name"]: sensor["sensorState"]["status"]
            for repo in graphql(port, SENSORS)["repositoriesOrError"]["nodes"]
            for sensor in repo["sensors"]
        }
        assert {name: status for name, status in sensors.items() if name.startswith("ingest_")} == {
            f"ingest_{t}_sensor": "RUNNING" for t in event_types()
        }
        assert sensors["marts_after_ingest_sensor"] == "RUNNING"
        assert sensors["live_facts_sensor"] == "RUNNING"

        def materialized(key: list[str]) -> bool:
            data = graphql(port, MATERIALIZATIONS % json.dumps(key)) or {}
            return bool((data.get("assetOrError") or {}).get("assetMaterializations"))

        # The daemon's sensor lands the live stream, and the marts sensor's run rebuilds the marts and
        # then the days the new rows touched (a daily partitioned mart).
        wait_for(lambda: materialized(["raw", "user_visit"]), 240, "a sensor-launched run to land raw/user_visit")
        wait_for(
            lambda: materialized(["marts", "fct_daily_active_users"]),
            420,
            "the marts sensor to rebuild today's partition of marts/fct_daily_active_users",
        )
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        dev.wait(90)
        log.close()
    assert dev.returncode == 0, (isolated_platform.parent / "dev.log").read_text()[-3000:]
    assert processes_with_home(isolated_platform) == []  # broker, generator, webserver, daemon, runs
