"""/v1/events: a correlation id down to the raw events behind it, equal to a direct scan of the Iceberg
tables and to the generated journey, with each row's Kafka coordinates and landing snapshot."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

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


def parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def parse_iso(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


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


def row_events(client: TestClient, who: dict[str, str], metric: str, row: str, limit: int) -> tuple[list[dict], int]:
    events: list[dict] = []
    pages, cursor = 0, None
    while True:
        params: dict[str, str | int] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        answer = client.get(f"/v1/metrics/{metric}/rows/{row}/events", params=params, headers=who)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        events += body["events"]
        pages += 1
        if (cursor := body["next_cursor"]) is None:
            return events, pages


def test_the_raw_events_behind_a_row_are_the_events_it_counts(
    landed_marts: LandedMarts, served: Served, client: TestClient
) -> None:
    analyst = served.auth("analyst")
    minutes = client.get("/v1/metrics/events_per_minute", params={"limit": 1000}, headers=analyst).json()["rows"]
    busiest = max((row for row in minutes if row["event_type"] == "add_to_cart"), key=lambda row: row["event_count"])
    assert busiest["event_count"] >= 3
    events, pages = row_events(client, analyst, "events_per_minute", f"{busiest['event_minute']},add_to_cart", 2)
    assert pages == -(-busiest["event_count"] // 2)
    minute = datetime.fromisoformat(busiest["event_minute"])
    produced = {
        e["event_id"]
        for e in landed_marts.dataset.events
        if e["event_type"] == "add_to_cart" and minute <= parse(e["timestamp"]) < minute + timedelta(minutes=1)
    }
    assert {e["event_id"] for e in events} == produced and len(events) == busiest["event_count"]
    assert [parse_iso(e["event_at"]) for e in events] == sorted(parse_iso(e["event_at"]) for e in events)

    day = client.get("/v1/metrics/revenue_daily", params={"limit": 1000}, headers=analyst).json()["rows"][1]
    purchases, _ = row_events(client, analyst, "revenue_daily", day["revenue_date"], 1000)
    assert len(purchases) == day["orders"] and {e["event_type"] for e in purchases} == {"purchase"}


def test_the_events_behind_a_product_or_category_row_are_those_its_counts_come_from(
    served: Served, client: TestClient
) -> None:
    analyst = served.auth("analyst")

    def rows(metric: str) -> list[dict]:
        answer = client.get(f"/v1/metrics/{metric}", params={"limit": 1000}, headers=analyst)
        assert answer.status_code == 200, answer.text
        return answer.json()["rows"]

    def users(events: list[dict], event_type: str) -> int:
        return len({e["user_id"] for e in events if e["event_type"] == event_type})

    product = max(rows("product_conversion_daily"), key=lambda r: (r["purchases"], r["page_views"]))
    assert product["purchases"] >= 2
    events, pages = row_events(
        client, analyst, "product_conversion_daily", f"{product['activity_date']},{product['product_id']}", 7
    )
    counted = Counter(e["event_type"] for e in events)
    assert (counted["user_visit"], counted["add_to_cart"], counted["purchase"]) == (
        product["page_views"],
        product["add_to_carts"],
        product["purchases"],
    )
    assert pages == -(-len(events) // 7) and len({e["event_id"] for e in events}) == len(events)
    assert all(e["payload"]["product_id"] == product["product_id"] for e in events if e["event_type"] != "purchase")
    assert all(e["event_at"][:10] == product["activity_date"] for e in events)

    category = max(rows("category_conversion_daily"), key=lambda r: r["purchasers"])
    events, _ = row_events(
        client, analyst, "category_conversion_daily", f"{category['activity_date']},{category['category']}", 1000
    )
    assert (users(events, "user_visit"), users(events, "purchase")) == (category["viewers"], category["purchasers"])

    funnel = max((r for r in rows("funnel_daily") if r["category"] != "all"), key=lambda r: r["purchasers"])
    events, _ = row_events(client, analyst, "funnel_daily", f"{funnel['activity_date']},{funnel['category']}", 1000)
    assert users(events, "user_visit") == funnel["visitors"]
    # Later steps count only users who took them in order, so the events hold at least as many users.
    assert users(events, "add_to_cart") >= funnel["cart_users"] and users(events, "purchase") >= funnel["purchasers"]


@pytest.mark.parametrize(
    ("path", "who", "status", "says"),
    [
        ("/v1/metrics/cohort_retention/rows/2026-11-02,1/events", "analyst", 422, "'funnel_daily'"),
        ("/v1/metrics/funnel_daily/rows/2026-11-01/events", "analyst", 422, "its day and category"),
        ("/v1/metrics/product_conversion_daily/rows/soon,p0001/events", "analyst", 422, "not a date"),
        ("/v1/metrics/events_per_minute/rows/2026-11-01T10:00:00Z/events", "analyst", 422, "2 key value(s)"),
        ("/v1/metrics/events_per_minute/rows/soon,purchase/events", "analyst", 422, "not an ISO 8601"),
        ("/v1/metrics/events_per_minute/rows/2026-11-01T10:00:00Z,signup/events", "analyst", 422, "not an activity"),
        ("/v1/metrics/revenue_daily/rows/2026-11-01/events", "viewer", 403, "needs role analyst"),
        ("/v1/metrics/revenue_daily/rows/2026-11-01/events", "restricted", 403, "aggregated over every country"),
        ("/v1/metrics/nope/rows/2026-11-01/events", "analyst", 422, "'daily_active_users'"),
    ],
)
def test_row_drill_down_refuses_what_it_cannot_answer(
    path: str, who: str, status: int, says: str, served: Served, client: TestClient
) -> None:
    answer = client.get(path, headers=served.auth(who))
    assert answer.status_code == status and says in answer.text, answer.text


JOURNEY_QUERY = """query($id: String!) {
  events(correlationId: $id) { correlationId events deadLetters deadLettersVisible snapshots { table snapshotId } }
}"""
ROW_QUERY = """query($metric: String!, $row: String!, $limit: Int!, $cursor: String) {
  rowEvents(metric: $metric, row: $row, limit: $limit, cursor: $cursor) { events nextCursor snapshots { table } }
}"""


def test_graphql_drills_down_like_rest_with_the_same_roles_and_country_rules(
    landed_marts: LandedMarts, served: Served, client: TestClient
) -> None:
    def graphql(who: str, query: str, **variables: Any) -> dict[str, Any]:
        answer = client.post("/graphql", json={"query": query, "variables": variables}, headers=served.auth(who))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    allowed = set(RESTRICTED_COUNTRIES)
    inside = journey_with_a_purchase(landed_marts, countries=allowed)
    outside = journey_with_a_purchase(landed_marts, countries=allowed, outside=True)
    for who, correlation_id in (("analyst", inside), ("restricted", inside), ("restricted", outside)):
        rest = client.get("/v1/events", params={"correlation_id": correlation_id}, headers=served.auth(who)).json()
        body = graphql(who, JOURNEY_QUERY, id=correlation_id)
        assert "errors" not in body, body
        assert body["data"]["events"]["events"] == rest["events"]
        assert body["data"]["events"]["deadLettersVisible"] == rest["dead_letters_visible"]
    assert graphql("restricted", JOURNEY_QUERY, id=outside)["data"]["events"]["events"] == []
    refused = graphql("viewer", JOURNEY_QUERY, id=inside)
    assert refused["data"] is None and "needs role analyst" in refused["errors"][0]["message"]

    # A row's events, page by page with the GraphQL cursor: the REST pages' events.
    row = client.get("/v1/metrics/revenue_daily", params={"limit": 1}, headers=served.auth("analyst")).json()
    day = row["rows"][0]["revenue_date"]
    rest_events, _ = row_events(client, served.auth("analyst"), "revenue_daily", day, 1000)
    paged: list[dict] = []
    cursor = None
    while True:
        page = graphql("analyst", ROW_QUERY, metric="revenue_daily", row=day, limit=7, cursor=cursor)
        assert "errors" not in page, page
        paged += page["data"]["rowEvents"]["events"]
        if (cursor := page["data"]["rowEvents"]["nextCursor"]) is None:
            break
    assert paged == rest_events and len(paged) == row["rows"][0]["orders"]
    limited = graphql("restricted", ROW_QUERY, metric="revenue_daily", row=day, limit=5)
    assert limited["data"] is None and "aggregated over every country" in limited["errors"][0]["message"]
