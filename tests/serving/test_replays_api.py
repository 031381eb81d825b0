"""Replays through the API, launched on a real Dagster webserver, and through the CLI: each kind does what
it says, the same request twice launches one run, and the counts agree with the lake."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from analytics_platform.contracts.envelope import encode_event, event_types
from analytics_platform.contracts.registry import DEFAULT_SCHEMA_DIR
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka.producer import publish
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import reset_offsets, stored_offsets
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.local.dev import code_locations_loaded
from analytics_platform.local.instance import prepare_dagster_home
from analytics_platform.local.orchestration import build_marts
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.serving.access import KeyStore, Role
from analytics_platform.serving.api.app import create_app
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from tests.conftest import set_environment
from tests.helpers import add_payload_field, free_port, send_raw, wait_for
from tests.serving.conftest import serving_api

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOPIC = "events.purchase"
DAY = date(2026, 11, 2)
ACTIVITY = ("user_visit", "add_to_cart", "checkout", "purchase")
SKIPPED = 15  # purchases of the second batch on partition 0 that ingestion skipped (an offsets reset)


@contextlib.contextmanager
def dagster_webserver(settings: Settings, log: Path) -> Iterator[int]:
    """``dagster-webserver`` over the repo's workspace, for this test's platform home; yields its port."""
    port = free_port()
    prepare_dagster_home(settings)
    command = [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    process = spawn(command, log, env=dict(os.environ))
    try:
        wait_for(lambda: code_locations_loaded(port), 180, "the Dagster webserver to load the code location")
        yield port
    finally:
        stop_group(process)


def readme_replay(settings: Settings, tmp_path: Path, key: str) -> str:
    """Run the README's replay example (the second bash block of "The API") against a real server."""
    section = (REPO / "README.md").read_text().split("## The API", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)[1]
    with serving_api(settings, tmp_path / "api.log", PLATFORM_DAGSTER_UI_URL=settings.dagster_ui_url) as api:
        script = f'set -euo pipefail\nH="Authorization: Bearer {key}"; API=http://127.0.0.1:{api.port}\n{block}'
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "curl" in block, done.stdout + done.stderr
    return done.stdout


def ingest_everything(settings: Settings) -> None:
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)


def activity_on(day: date, *batches: list[dict]) -> Counter[str]:
    """Activity events per type with event time on ``day``, counted from what the generator produced."""
    return Counter(
        e["event_type"]
        for batch in batches
        for e in batch
        if e["event_type"] in ACTIVITY and e["timestamp"][:10] == str(day)
    )


def mart_events_on(client: TestClient, headers: dict[str, str], day: date) -> Counter[str]:
    """fct_events_per_hour over ``day``, summed per event type, read through the API."""
    window = {"start": f"{day}T00:00:00Z", "end": f"{day + timedelta(days=1)}T00:00:00Z", "limit": 1000}
    answer = client.get("/v1/metrics/events_per_hour", params=window, headers=headers)
    assert answer.status_code == 200, answer.text
    counts: Counter[str] = Counter()
    for row in answer.json()["rows"]:
        counts[row["event_type"]] += row["event_count"]
    return counts


def finished(client: TestClient, headers: dict[str, str], replay_id: str) -> dict:
    def done() -> dict | None:
        answer = client.get(f"/v1/replays/{replay_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body if body["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    body = wait_for(done, 300, f"replay {replay_id} to finish")
    assert body["status"] == "SUCCESS", json.dumps(body, indent=1)
    return body


def test_replays_through_the_api_and_the_cli(broker: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMA_DIR, schemas)
    set_environment(monkeypatch, PLATFORM_SCHEMA_DIR=str(schemas))
    settings = get_settings()
    catalog = load_catalog(settings)
    purchases_table = ensure_raw_table(catalog, settings, event_types()["purchase"])

    # Batch A lands; `checkpoint` is a known good moment; batch B lands after it, but ingestion skips the
    # first SKIPPED purchases of partition 0 (an operator's offsets reset). Then 4 purchases come as an
    # unregistered schema version 2 (dead letters until v2 is registered).
    first = generate_events(3_000, seed=31, days=1, start=datetime(2026, 11, 2, tzinfo=UTC))
    assert publish(first, settings) == len(first)
    ingest_everything(settings)
    checkpoint = datetime.now(UTC)
    second = generate_events(3_000, seed=32, days=1, start=datetime(2026, 11, 2, tzinfo=UTC))
    early = [
        e
        for e in generate_events(2_000, seed=33, days=1, start=datetime(2026, 11, 2, tzinfo=UTC))
        if e["event_type"] == "purchase"
    ][:4]
    early_v2 = [dict(e, schema_version=2, payload=dict(e["payload"], coupon_code="EARLY")) for e in early]
    assert publish(second, settings) == len(second)
    stored = stored_offsets(purchases_table.refresh(), TOPIC).next_offsets
    reset_offsets(purchases_table, TOPIC, stored | {0: stored[0] + SKIPPED}, reason="test: skip a region")
    ingest_everything(settings)
    gap = {"0": [stored[0], stored[0] + SKIPPED]}
    build_marts(settings)
    # After the build: dead letters over the rate would stop it (a blocking raw check) until replayed.
    send_raw(settings, TOPIC, [(encode_event(e), e["user_id"].encode()) for e in early_v2])
    ingest_until_caught_up(settings, TOPIC)

    store = KeyStore(settings.api_keys_path)
    operator, analyst = store.create("ops", Role.operator, None), store.create("bi", Role.analyst, None)
    ops, bi = {"Authorization": f"Bearer {operator}"}, {"Authorization": f"Bearer {analyst}"}
    with dagster_webserver(settings, tmp_path / "webserver.log") as port:
        served = settings.model_copy(update={"dagster_ui_url": f"http://127.0.0.1:{port}"})
        with TestClient(create_app(served)) as client:
            offsets = {"kind": "offsets", "topic": TOPIC, "partitions": gap}
            assert client.post("/v1/replays", json=offsets, headers=bi).status_code == 403
            bad = client.post("/v1/replays", json=offsets | {"topic": "events.nope"}, headers=ops)
            assert bad.status_code == 422 and "unknown topic 'events.nope'" in bad.text
            assert client.get("/v1/replays/rp-0000000000000000", headers=ops).status_code == 404
            beyond = client.post("/v1/replays", json=offsets | {"partitions": {"0": [0, 10**9]}}, headers=ops)
            assert beyond.status_code == 422 and "holds offsets 0.." in beyond.json()["detail"], beyond.text

            # 1. Re-read the skipped region: exactly it lands; the same request again launches nothing.
            launched = client.post("/v1/replays", json=offsets, headers=ops)
            assert launched.status_code == 202, launched.text
            assert launched.headers["location"] == f"/v1/replays/{launched.json()['id']}"
            again = client.post("/v1/replays", json={**offsets, "partitions": {"0": gap["0"]}}, headers=ops)
            assert again.status_code == 200 and again.json()["run_id"] == launched.json()["run_id"]
            body = finished(client, bi, launched.json()["id"])
            assert body["attempts"] == 1
            assert body["counts"] | {"ranges": None} == {
                "offsets": SKIPPED,
                "already_landed": 0,
                "already_dead_lettered": 0,
                "landed": SKIPPED,
                "dead_lettered": 0,
                "left_to_ingestion": 0,
                "ranges": None,
            }
            purchases = purchases_table.refresh().scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist()
            sent = [e["event_id"] for e in [*first, *second] if e["event_type"] == "purchase"]
            assert sorted(purchases) == sorted(sent)  # every purchase once, the skipped ones included

            # 2. Register v2, then replay the dead letters that failed on the unknown version.
            add_payload_field("coupon_code", ["null", "string"], default=None)(
                schema := json.loads((schemas / "purchase" / "v1.avsc").read_text())
            )
            (schemas / "purchase" / "v2.avsc").write_text(json.dumps(schema))
            dead = client.post("/v1/replays", json={"kind": "dead_letters", "check": "known_version"}, headers=ops)
            assert dead.status_code == 202, dead.text
            body = finished(client, bi, dead.json()["id"])
            assert (body["counts"]["chosen"], body["counts"]["landed"], body["counts"]["still_failing"]) == (4, 4, 0)

            # 3. Rebuild the day as of the checkpoint: the facts count exactly the rows ingested by then.
            as_of = {"kind": "days", "first": str(DAY), "last": str(DAY), "as_of": checkpoint.isoformat()}
            rebuilt = client.post("/v1/replays", json=as_of, headers=ops)
            assert rebuilt.status_code == 202, rebuilt.text
            assert finished(client, bi, rebuilt.json()["id"])["counts"] == {"first": str(DAY), "last": str(DAY)}
            assert mart_events_on(client, bi, DAY) == activity_on(DAY, first)
            # ... and as of now: everything, the re-read and replayed purchases included.
            now = client.post("/v1/replays", json={"kind": "days", "first": str(DAY), "last": str(DAY)}, headers=ops)
            assert now.status_code == 202, now.text
            finished(client, bi, now.json()["id"])
            assert mart_events_on(client, bi, DAY) == activity_on(DAY, first, second, early_v2)

        # 4. The README's replay call, against a real `analytics-platform serve`: the same request as the
        # one just made, so the same replay and run.
        answer = json.loads(readme_replay(served, tmp_path, operator))
        assert (answer["id"], answer["run_id"]) == (now.json()["id"], now.json()["run_id"])

        # 5. The CLI knows the API's replays by the same id, and runs nothing for them again.
        cli = str(BIN / "analytics-platform")
        result = subprocess.run(
            [cli, "replay", "offsets", "--topic", TOPIC, "--partition", f"0:{gap['0'][0]}-{gap['0'][1]}"],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert (
            f"replay {launched.json()['id']} was requested before: run {launched.json()['run_id']} SUCCESS"
            in result.stdout
        )
        status = subprocess.run(
            [cli, "replay", "status", dead.json()["id"]], capture_output=True, text=True, check=False
        )
        assert status.returncode == 0 and "landed: 4" in status.stdout, status.stdout + status.stderr
