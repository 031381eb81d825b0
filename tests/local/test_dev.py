"""``make dev`` smoke test: broker + live generator + ``dagster dev`` + the API come up, show the lineage,
ingest, serve the marts, and leave no process behind when stopped with Ctrl-C."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics_platform.contracts.envelope import event_types
from tests.dev import CLI, graphql, running_dev
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
SENSORS = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status } } } } } }"""
MATERIALIZATIONS = """{ assetOrError(assetKey: {path: %s}) {
    ... on Asset { assetMaterializations(limit: 1) { runId } } } }"""


def test_make_dev_serves_the_lineage_runs_sensors_and_stops_cleanly(isolated_platform: Path) -> None:
    with running_dev(isolated_platform, "--rate", "50") as dev:
        port = dev.port

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
        # Snapshots are assets of their own, between the reference changes and the dimensions.
        assert "staging/stg_product_changes" in deps["snapshots/snap_products"]
        assert "snapshots/snap_products" in deps["marts/dim_products"]

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
        # The API make dev started serves the marts those runs published, to a key made with the CLI.
        key = subprocess.run(
            [CLI, "api-key", "create", "smoke", "--role", "viewer"], capture_output=True, text=True, check=True
        ).stdout.strip()
        today = datetime.now(UTC).date().isoformat()

        def todays_dau() -> list[dict] | None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{dev.api_port}/v1/metrics/daily_active_users?start={today}",
                headers={"Authorization": f"Bearer {key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return json.loads(answer.read())["rows"] or None
            except OSError:
                return None

        [row] = wait_for(todays_dau, 60, "the API to serve today's DAU")
        assert row["activity_date"] == today and row["dau"] > 0

        # The SQL endpoint make dev started answers psql, logged in with an analyst key.
        analyst = subprocess.run(
            [CLI, "api-key", "create", "bi", "--role", "analyst"], capture_output=True, text=True, check=True
        ).stdout.strip()
        days = subprocess.run(
            [
                "psql",
                f"postgresql://bi:{analyst}@127.0.0.1:{dev.sql_port}/warehouse",
                "-Atc",
                f"select count(*) from marts.fct_daily_active_users where activity_date <= '{today}'",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert int(days.stdout) >= 1

        # A replay sent to that API runs on this Dagster (the webserver on make dev's port) and links there.
        operator = subprocess.run(
            [CLI, "api-key", "create", "ops", "--role", "operator"], capture_output=True, text=True, check=True
        ).stdout.strip()

        def call(method: str, path: str, body: dict | None = None) -> dict:
            request = urllib.request.Request(
                f"http://127.0.0.1:{dev.api_port}{path}",
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Authorization": f"Bearer {operator}", "Content-Type": "application/json"},
                method=method,
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read())

        replay = call("POST", "/v1/replays", {"kind": "dead_letters", "topic": "events.purchase"})
        assert replay["run_url"].startswith(f"http://127.0.0.1:{port}/runs/")
        done = wait_for(
            lambda: (r := call("GET", f"/v1/replays/{replay['id']}"))["status"] in ("SUCCESS", "FAILURE") and r,
            180,
            "the replay's run to end",
        )
        assert done["status"] == "SUCCESS" and done["counts"]["still_failing"] == 0, done
    # Stopped with Ctrl-C by running_dev: exit code 0 and no process left (broker, generator, webserver,
    # daemon, code servers, runs).
