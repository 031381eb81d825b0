"""Replaying dead letters after a fix: they land through the normal path once, and are marked replayed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.ingest.replay import pending_dead_letters
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_replays_table
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from tests.conftest import set_environment
from tests.helpers import add_payload_field, landed, schema_dir_with_v2, send_raw

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "analytics-platform"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_replay_after_a_new_schema_version_lands_once_and_marks_replayed(
    broker: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    purchases = [e for e in generate_events(4_000, seed=21) if e["event_type"] == "purchase"]
    early_v2 = [dict(e, schema_version=2, payload=dict(e["payload"], coupon_code="EARLY")) for e in purchases[:30]]
    v1 = purchases[30:50]
    broken = dict(purchases[50], payload=dict(purchases[50]["payload"], revenue=-1))
    # A producer shipped v2 before the registry had it (so it bypassed edge validation).
    send_raw(broker, TOPIC, [(encode_event(e), e["user_id"].encode()) for e in [*early_v2, *v1, broken]])
    ingest_until_caught_up(broker, TOPIC)
    catalog = load_catalog(broker)
    assert landed(broker, "purchase").num_rows == len(v1)
    pending = pending_dead_letters(catalog, broker)
    assert pending.num_rows == len(early_v2) + 1

    set_environment(
        monkeypatch,
        PLATFORM_SCHEMA_DIR=str(
            schema_dir_with_v2(tmp_path, "purchase", add_payload_field("coupon_code", ["null", "string"], default=None))
        ),
    )
    settings = get_settings()
    dry = cli("dead-letters", "replay", "--check", "known_version", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{TOPIC}: would land {len(early_v2)}" in dry.stdout
    assert landed(settings, "purchase").num_rows == len(v1)  # a dry run writes nothing

    replay = cli("dead-letters", "replay")
    assert replay.returncode == 0, replay.stderr
    assert f"{TOPIC}: landed {len(early_v2)}" in replay.stdout
    assert "payload.revenue is negative" in replay.stdout  # still failing: reported, left pending

    rows = landed(settings, "purchase").to_pylist()
    by_id = {row["event_id"]: row for row in rows}
    assert len(rows) == len(by_id) == len(v1) + len(early_v2)
    letters = {(r["kafka_partition"], r["kafka_offset"]): r for r in pending.to_pylist()}
    for event in early_v2:
        row = by_id[event["event_id"]]
        assert row["payload"]["coupon_code"] == "EARLY" and row["schema_version"] == 2
        assert (row["kafka_partition"], row["kafka_offset"]) in letters  # keeps its Kafka coordinates
    assert ensure_replays_table(catalog, settings).scan().to_arrow().num_rows == len(early_v2)
    still_pending = pending_dead_letters(load_catalog(settings), settings).to_pylist()
    assert [letter["raw_value"] for letter in still_pending] == [encode_event(broken)]

    same = cli("dead-letters", "replay")  # the same request soon after: the run it launched, not another
    assert same.returncode == 0 and "was requested before" in same.stdout, same.stdout + same.stderr
    assert f"{TOPIC}: landed {len(early_v2)}" in same.stdout
    set_environment(monkeypatch, PLATFORM_REPLAY_DEDUP_S="0")  # later on, the same request runs again
    again = cli("dead-letters", "replay")
    assert again.returncode == 0 and "1 dead letter(s) chosen" in again.stdout
    assert landed(settings, "purchase").num_rows == len(v1) + len(early_v2)  # idempotent

    # A replay that died after its raw commit, before recording what it landed: the next run finds the
    # commit by replay id and only writes the records (simulated by removing the records it wrote).
    ensure_replays_table(load_catalog(settings), settings).delete(f"kafka_topic = '{TOPIC}'")
    assert pending_dead_letters(load_catalog(settings), settings).num_rows == len(early_v2) + 1
    resumed = cli("dead-letters", "replay")
    assert resumed.returncode == 0 and f"{TOPIC}: landed {len(early_v2)}" in resumed.stdout
    assert landed(settings, "purchase").num_rows == len(v1) + len(early_v2)  # not appended twice
    assert pending_dead_letters(load_catalog(settings), settings).num_rows == 1
