"""Schema evolution: a v2 that adds an optional field evolves the raw table in place; a breaking v2 is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import SchemaRegistryError
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.ingest.plan import plan_next_batch
from analytics_platform.kafka.producer import producer_options, publish
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.local.orchestration import build_marts
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from analytics_platform.warehouse.connections import connect_marts
from tests.conftest import set_environment
from tests.helpers import add_payload_field, produce, schema_dir_with_v2

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"


def data_files(settings: Settings) -> set[str]:
    table = ensure_raw_table(load_catalog(settings), settings, event_types()["purchase"])
    return {task.file.file_path for task in table.scan().plan_files()}


def rows_by_event_id(settings: Settings) -> dict[str, dict[str, Any]]:
    table = ensure_raw_table(load_catalog(settings), settings, event_types()["purchase"])
    rows = table.scan().to_arrow().drop_columns(["ingested_at"]).to_pylist()
    return {row["event_id"]: row for row in rows}


def test_optional_field_evolves_the_table_without_rewriting_and_replays_identically(
    broker: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1_events = produce(broker, 3_000, seed=11)
    ingest_until_caught_up(broker, TOPIC)
    files_v1, rows_v1 = data_files(broker), rows_by_event_id(broker)
    assert rows_v1 and "coupon_code" not in next(iter(rows_v1.values()))["payload"]

    v2_dir = schema_dir_with_v2(
        tmp_path, "purchase", add_payload_field("coupon_code", ["null", "string"], default=None)
    )
    set_environment(monkeypatch, PLATFORM_SCHEMA_DIR=str(v2_dir))
    settings = get_settings()
    v2_events = [
        dict(e, schema_version=2, payload=dict(e["payload"], coupon_code="WINTER"))
        for e in generate_events(3_000, seed=12)
        if e["event_type"] == "purchase"
    ]
    assert publish(v2_events, settings, **producer_options(settings)) == len(v2_events)
    ingest_until_caught_up(settings, TOPIC)

    table = ensure_raw_table(load_catalog(settings), settings, event_types()["purchase"])
    assert table.schema().find_field("payload.coupon_code").required is False
    assert files_v1 <= data_files(settings)  # old data files kept as they are: no rewrite
    rows = rows_by_event_id(settings)
    assert len(rows) == len(rows_v1) + len(v2_events)
    assert all(rows[event_id]["payload"]["coupon_code"] is None for event_id in rows_v1)
    assert {rows[e["event_id"]]["payload"]["coupon_code"] for e in v2_events} == {"WINTER"}

    build_marts(settings)  # dbt models keep building on the evolved table
    with connect_marts(settings) as marts:
        purchases = marts.execute("select count(*) from staging.stg_purchases").fetchone()
    assert purchases == (len(rows),)

    # Replaying the old offsets after the change (a fresh home reads the topic from offset 0 with v2)
    # lands the v1 events exactly as the first time, the new column null.
    set_environment(monkeypatch, PLATFORM_HOME=str(tmp_path / "replay"))
    replay_settings = get_settings()
    ingest_until_caught_up(replay_settings, TOPIC)
    replayed = rows_by_event_id(replay_settings)
    for event_id, row in rows_v1.items():
        assert replayed[event_id] == dict(row, payload=dict(row["payload"], coupon_code=None))
    assert len(replayed) == len(rows)
    assert sum(e["event_type"] == "purchase" for e in v1_events) == len(rows_v1)


def test_breaking_change_is_refused_before_any_data_moves(
    broker: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    produce(broker, 1_000, seed=13)
    ingest_until_caught_up(broker, TOPIC)
    snapshot = ensure_raw_table(load_catalog(broker), broker, event_types()["purchase"]).current_snapshot()
    produce(broker, 1_000, seed=14)

    def retype_item_count(schema: dict[str, Any]) -> None:
        payload = next(f for f in schema["fields"] if f["name"] == "payload")
        next(f for f in payload["type"]["fields"] if f["name"] == "item_count")["type"] = "string"

    set_environment(monkeypatch, PLATFORM_SCHEMA_DIR=str(schema_dir_with_v2(tmp_path, "purchase", retype_item_count)))
    settings = get_settings()
    with pytest.raises(SchemaRegistryError, match="payload.item_count"):
        plan_next_batch(settings, TOPIC)
    monkeypatch.delenv("PLATFORM_SCHEMA_DIR")
    table = ensure_raw_table(load_catalog(broker), broker, event_types()["purchase"])
    assert table.current_snapshot() == snapshot  # nothing landed under the breaking schema
    assert table.schema().find_field("payload.item_count").field_type.__class__.__name__ == "IntegerType"
