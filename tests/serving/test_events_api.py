"""/v1/events: a correlation id down to the raw events behind it, equal to a direct scan of the Iceberg
tables and to the generated journey, with each row's Kafka coordinates and landing snapshot."""

from __future__ import annotations

import json
from collections import Counter

import duckdb
import pytest
from fastapi.testclient import TestClient

from analytics_platform.contracts.envelope import event_types
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import NEXT_OFFSETS_KEY, START_OFFSETS_KEY
from analytics_platform.warehouse.connections import duckdb_config, install_extensions
from tests.landed import LandedMarts
from tests.serving.conftest import RESTRICTED_COUNTRIES, Served

pytestmark = pytest.mark.integration


def journeys(landed_marts: LandedMarts) -> dict[str, list[dict]]:
    by_id: dict[str, list[dict]] = {}
    for event in landed_marts.dataset.events:
        by_id.setdefault(event["correlation_id"], []).append(event)
    return by_id


def journey_with_a_purchase(
    landed_marts: LandedMarts, *, countries: set[str] | None = None, outside: bool = False
) -> str:
    """A purchase journey of a user who stayed in one country all along (in or outside ``countries``)."""
    for correlation_id, events in sorted(journeys(landed_marts).items()):
        types = {event["event_type"] for event in events}
        user = events[0]["user_id"]
        versions = landed_marts.dataset.user_versions.get(user, [])
        homes = {version.country for version in versions}
        if "purchase" not in types or len(homes) != 1 or len({e["user_id"] for e in events}) != 1:
            continue
        if countries is None or (homes <= countries) != outside:
            return correlation_id
    raise AssertionError("the landed dataset has no such journey")


def test_a_correlation_id_finds_every_raw_event_of_the_journey_with_where_it_came_from(
    landed_marts: LandedMarts, served: Served, client: TestClient
) -> None:
    correlation_id = journey_with_a_purchase(landed_marts)
    answer = client.get("/v1/events", params={"correlation_id": correlation_id}, headers=served.auth("analyst"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    produced = journeys(landed_marts)[correlation_id]
    assert sorted(event["event_id"] for event in body["events"]) == sorted(event["event_id"] for event in produced)
    assert Counter(e["event_type"] for e in body["events"]) == Counter(e["event_type"] for e in produced)
    assert [e["event_at"] for e in body["events"]] == sorted(e["event_at"] for e in body["events"])
    assert body["dead_letters"] == [] and body["dead_letters_visible"] is True

    # The same rows as a direct scan of the Iceberg tables with DuckDB, Kafka coordinates included.
    settings = served.settings
    catalog = load_catalog(settings)
    install_extensions(settings)
    direct = set()
    with duckdb.connect(config=duckdb_config(settings)) as con:
        con.execute("load iceberg")
        for name in event_types():
            table = catalog.load_table(f"raw.{name}")
            direct |= set(
                con.execute(
                    "select event_id, kafka_topic, kafka_partition, kafka_offset from iceberg_scan(?) "
                    "where correlation_id = ?",
                    [table.metadata_location, correlation_id],
                ).fetchall()
            )
    answered = {
        (e["event_id"], e["kafka"]["topic"], e["kafka"]["partition"], e["kafka"]["offset"]) for e in body["events"]
    }
    assert answered == direct

    # Each row names the snapshot whose committed offset range holds it.
    for event in body["events"]:
        table = catalog.load_table(event["table"])
        snapshot = table.snapshot_by_id(int(event["landed_by"]["snapshot_id"]))
        assert snapshot is not None and snapshot.summary is not None
        partition = str(event["kafka"]["partition"])
        start = json.loads(snapshot.summary[START_OFFSETS_KEY])[partition]
        end = json.loads(snapshot.summary[NEXT_OFFSETS_KEY])[partition]
        assert start <= event["kafka"]["offset"] < end
        assert event["landed_by"]["run_id"] is None  # landed without Dagster by the fixture
    assert body["snapshots"] == {
        name: str(catalog.load_table(f"raw.{name}").current_snapshot().snapshot_id) for name in event_types()
    }


def test_drill_down_needs_the_analyst_role_and_a_limited_key_sees_only_its_countries(
    landed_marts: LandedMarts, served: Served, client: TestClient
) -> None:
    allowed = set(RESTRICTED_COUNTRIES)
    inside = journey_with_a_purchase(landed_marts, countries=allowed)
    outside = journey_with_a_purchase(landed_marts, countries=allowed, outside=True)
    viewer = client.get("/v1/events", params={"correlation_id": inside}, headers=served.auth("viewer"))
    assert viewer.status_code == 403 and "needs role analyst" in viewer.json()["detail"]

    seen = client.get("/v1/events", params={"correlation_id": inside}, headers=served.auth("restricted")).json()
    assert len(seen["events"]) == len(journeys(landed_marts)[inside])
    assert seen["dead_letters_visible"] is False
    hidden = client.get("/v1/events", params={"correlation_id": outside}, headers=served.auth("restricted")).json()
    assert hidden["events"] == []
    assert client.get("/v1/events", params={"correlation_id": outside}, headers=served.auth("analyst")).json()["events"]

    for bad in ({"correlation_id": ""}, {}, {"correlation_id": "x" * 201}):
        answer = client.get("/v1/events", params=bad, headers=served.auth("analyst"))
        assert answer.status_code == 422, answer.text
