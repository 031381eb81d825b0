"""/v1/metrics over the real published marts: every row exactly once through the pages, stable pages
across a publish, freshness, validation and row-level security."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.serving.metrics import METRICS, Metric
from analytics_platform.warehouse import builds
from analytics_platform.warehouse.connections import current_build, duckdb_config
from tests.landed import LandedMarts
from tests.serving.conftest import RESTRICTED_COUNTRIES, Served

pytestmark = pytest.mark.integration


def all_pages(client: TestClient, who: dict[str, str], metric: str, **params: Any) -> tuple[list[dict], int]:
    """Every row of a query by following next_cursor; also how many pages it took."""
    rows: list[dict] = []
    pages = 0
    cursor = None
    while True:
        answer = client.get(
            f"/v1/metrics/{metric}", params=params | ({"cursor": cursor} if cursor else {}), headers=who
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows += body["rows"]
        pages += 1
        if (cursor := body["next_cursor"]) is None:
            return rows, pages


def direct(served: Served, build: str, sql: str, parameters: list[Any] | None = None) -> list[dict]:
    """The same rows read with DuckDB from the build file, as JSON would carry them (opened as the API
    opens it: DuckDB refuses a second connection to a file with another configuration in one process)."""
    with duckdb.connect(build, read_only=True, config=duckdb_config(served.settings)) as con:
        cursor = con.execute(sql, parameters or [])
        columns = [d[0] for d in cursor.description or ()]
        rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    return json.loads(json.dumps(rows, default=lambda v: float(v) if hasattr(v, "as_integer_ratio") else v.isoformat()))


def key_order(metric: Metric) -> str:
    return ", ".join(metric.key)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_paging_through_a_metric_returns_every_mart_row_once_in_key_order(
    name: str, served: Served, client: TestClient
) -> None:
    metric = METRICS[name]
    build = str(current_build(served.settings))
    expected = direct(served, build, f"select * from {metric.relation} order by {key_order(metric)}")
    assert expected, f"{metric.relation} is empty in the landed marts"
    limit = min(1000, max(1, len(expected) // 4))  # several pages
    rows, pages = all_pages(client, served.auth("viewer"), name, limit=limit)
    assert rows == expected
    assert pages == -(-len(expected) // limit)


def test_filters_select_the_rows_the_mart_holds_for_them(served: Served, client: TestClient) -> None:
    build = str(current_build(served.settings))
    [first] = direct(served, build, "select activity_date, category from marts.fct_funnel_daily order by 1, 2 limit 1")
    day, category = first["activity_date"], first["category"]
    rows, _ = all_pages(
        client, served.auth("viewer"), "funnel_daily", category=category, start=day, end=f"{day}T23:59:59Z"
    )
    expected = direct(
        served, build, "select * from marts.fct_funnel_daily where category = ? and activity_date = ?", [category, day]
    )
    assert rows == expected and len(rows) == 1
    per_type, _ = all_pages(client, served.auth("viewer"), "events_per_hour", event_type="purchase", limit=1000)
    assert per_type == direct(
        served,
        build,
        "select * from marts.fct_events_per_hour where event_type = 'purchase' order by event_hour, event_type",
    )
    # A filter value is a bound parameter, never SQL.
    injected = client.get(
        "/v1/metrics/funnel_daily", params={"category": "x' or 1=1 --"}, headers=served.auth("viewer")
    )
    assert injected.status_code == 200 and injected.json()["rows"] == []


def test_later_pages_read_the_build_the_first_page_read_though_a_newer_one_was_published(
    served: Served, client: TestClient
) -> None:
    before = str(current_build(served.settings))
    original = direct(served, before, "select * from marts.fct_daily_active_users order by activity_date")
    first = client.get("/v1/metrics/daily_active_users", params={"limit": 1}, headers=served.auth("viewer")).json()
    assert first["rows"] == original[:1] and len(original) >= 3

    # A new build is published in which every DAU is different (as a rebuild after late events would).
    newer = builds.prepare_build(served.settings, load_catalog(served.settings))
    with duckdb.connect(str(newer)) as con:
        con.execute("update marts.fct_daily_active_users set dau = dau + 1000")
    builds.publish(served.settings, newer)

    second = client.get(
        "/v1/metrics/daily_active_users",
        params={"cursor": first["next_cursor"], "limit": 1},
        headers=served.auth("viewer"),
    ).json()
    assert second["rows"] == original[1:2] and second["next_cursor"] is not None
    assert second["as_of"]["build"] == first["as_of"]["build"]
    fresh = client.get("/v1/metrics/daily_active_users", params={"limit": 1}, headers=served.auth("viewer")).json()
    assert fresh["as_of"]["build"] == newer.parent.name != first["as_of"]["build"]
    assert [row["dau"] for row in fresh["rows"]] == [row["dau"] + 1000 for row in original[:1]]

    # Once the first page's build is deleted and no API process holds it open, its cursor gets a clear 409.
    for _ in range(builds.KEEP_BUILDS):
        builds.publish(served.settings, builds.prepare_build(served.settings, load_catalog(served.settings)))
    with served.client() as restarted:
        gone = restarted.get(
            "/v1/metrics/daily_active_users", params={"cursor": second["next_cursor"]}, headers=served.auth("viewer")
        )
    assert gone.status_code == 409, gone.text
    assert "no longer kept" in gone.json()["detail"] and "first page again" in gone.json()["detail"]


def test_a_page_asked_again_comes_from_the_cache_of_its_build_with_a_fresh_age(
    served: Served, client: TestClient
) -> None:
    ask = {"params": {"limit": 3}, "headers": served.auth("viewer")}
    first, again = (client.get("/v1/metrics/daily_active_users", **ask) for _ in range(2))
    assert first.json() == again.json()
    cache = client.app.state.services.pages  # type: ignore[attr-defined]
    build = first.json()["as_of"]["build"]
    assert cache.get((build, "daily_active_users", "{}", "None", "None", 3)) is not None
    # The freshness header is an age: computed per request, never cached.
    assert float(again.headers["X-Data-Freshness-Seconds"]) >= float(first.headers["X-Data-Freshness-Seconds"])


def test_every_answer_says_which_snapshots_and_event_times_it_reflects(
    landed_marts: LandedMarts, served: Served, client: TestClient
) -> None:
    answer = client.get("/v1/metrics/revenue_daily", headers=served.auth("viewer"))
    as_of = answer.json()["as_of"]
    catalog = load_catalog(served.settings)
    newest_by_type: dict[str, str] = {}
    for event in landed_marts.dataset.events:
        newest_by_type[event["event_type"]] = max(newest_by_type.get(event["event_type"], ""), event["timestamp"])
    for name, raw in as_of["raw"].items():
        snapshot = catalog.load_table(f"raw.{name}").current_snapshot()
        assert snapshot is not None and raw["snapshot_id"] == snapshot.snapshot_id
        newest = datetime.strptime(newest_by_type[name], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert datetime.fromisoformat(raw["newest_event_at"]) == newest
    age = datetime.now(UTC) - max(datetime.fromisoformat(r["newest_event_at"]) for r in as_of["raw"].values())
    assert abs(float(answer.headers["X-Data-Freshness-Seconds"]) - age.total_seconds()) < 60
    assert set(as_of["raw"]) == {t for t in newest_by_type}


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/v1/metrics/no_such_metric", {}, 404, "daily_active_users"),
        ("/v1/metrics/daily_active_users", {"category": "books"}, 422, "has no parameter 'category'"),
        ("/v1/metrics/daily_active_users", {"catgory": "books"}, 422, "its parameters: start, end, limit, cursor"),
        ("/v1/metrics/daily_active_users", {"start": "2026-11-05", "end": "2026-11-01"}, 422, "must be before end"),
        ("/v1/metrics/daily_active_users", {"start": "yesterday"}, 422, "start"),
        ("/v1/metrics/daily_active_users", {"limit": 1001}, 422, "less than or equal to 1000"),
        ("/v1/metrics/daily_active_users", {"limit": 0}, 422, "greater than or equal to 1"),
        ("/v1/metrics/events_per_hour", {"event_type": "signup"}, 422, "user_visit"),
        ("/v1/metrics/sessions", {"country": "germany"}, 422, "country"),
        ("/v1/metrics/daily_active_users", {"cursor": "not-a-cursor"}, 422, "malformed or was altered"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_to_change(
    path: str, params: dict[str, Any], status: int, says: str, served: Served, client: TestClient
) -> None:
    answer = client.get(path, params=params, headers=served.auth("viewer"))
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_a_cursor_cannot_be_edited_or_moved_to_another_metric(served: Served, client: TestClient) -> None:
    first = client.get("/v1/metrics/sessions", params={"limit": 3}, headers=served.auth("viewer")).json()
    body, _, signature = first["next_cursor"].partition(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    edited = client.get("/v1/metrics/sessions", params={"cursor": tampered}, headers=served.auth("viewer"))
    assert edited.status_code == 422 and "altered" in edited.json()["detail"]
    moved = client.get(
        "/v1/metrics/daily_active_users", params={"cursor": first["next_cursor"]}, headers=served.auth("viewer")
    )
    assert moved.status_code == 422 and "pages metric 'sessions'" in moved.json()["detail"]
    refiltered = client.get(
        "/v1/metrics/sessions", params={"cursor": first["next_cursor"], "country": "DE"}, headers=served.auth("viewer")
    )
    assert refiltered.status_code == 422 and "other filters" in refiltered.json()["detail"]


def test_keys_are_required_and_roles_and_countries_limit_what_they_read(served: Served, client: TestClient) -> None:
    missing = client.get("/v1/metrics/daily_active_users")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert "api-key create" in missing.json()["detail"]
    wrong = client.get("/v1/metrics/daily_active_users", headers={"X-API-Key": "apk_not-a-key"})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]
    by_header = client.get("/v1/metrics/daily_active_users", headers={"X-API-Key": served.keys["viewer"]})
    assert by_header.status_code == 200

    # A country-limited key reads no metric aggregated over every country...
    for name, metric in METRICS.items():
        answer = client.get(f"/v1/metrics/{name}", headers=served.auth("restricted"))
        if metric.country_column is None:
            assert answer.status_code == 403 and "aggregated over every country" in answer.json()["detail"]

    # ...and exactly its countries' rows of the others, on every page.
    build = str(current_build(served.settings))
    allowed = direct(
        served,
        build,
        "select * from marts.fct_sessions where country in ('DE', 'FR') order by started_at, session_id",
    )
    rows, pages = all_pages(client, served.auth("restricted"), "sessions", limit=min(1000, max(1, len(allowed) // 3)))
    assert rows == allowed and pages >= 3
    assert {row["country"] for row in rows} == set(RESTRICTED_COUNTRIES)
    # Asking for another country's rows finds none; a cursor made by an unrestricted key is refused.
    assert (
        client.get("/v1/metrics/sessions", params={"country": "US"}, headers=served.auth("restricted")).json()["rows"]
        == []
    )
    unrestricted = client.get("/v1/metrics/sessions", params={"limit": 1}, headers=served.auth("viewer")).json()
    reused = client.get(
        "/v1/metrics/sessions", params={"cursor": unrestricted["next_cursor"]}, headers=served.auth("restricted")
    )
    assert reused.status_code == 422 and "other countries" in reused.json()["detail"]


def test_a_revoked_key_is_refused_by_the_running_api(served: Served, client: TestClient) -> None:
    from analytics_platform.serving.access import KeyStore

    assert client.get("/v1/metrics", headers=served.auth("analyst")).status_code == 200
    assert KeyStore(served.settings.api_keys_path).revoke("analyst")
    assert client.get("/v1/metrics", headers=served.auth("analyst")).status_code == 401


PAGE_QUERY = """query($name: String!, $limit: Int!, $cursor: String, $filters: MetricFilters) {
  metric(name: $name, limit: $limit, cursor: $cursor, filters: $filters) {
    rows nextCursor freshnessSeconds asOf { build raw { table snapshotId newestEventAt } }
  }
}"""


def graphql(client: TestClient, who: dict[str, str], query: str, **variables: Any) -> dict[str, Any]:
    answer = client.post("/graphql", json={"query": query, "variables": variables}, headers=who)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_graphql_pages_the_same_rows_with_the_same_cursor_and_country_rules(served: Served, client: TestClient) -> None:
    build = str(current_build(served.settings))
    allowed = direct(
        served, build, "select * from marts.fct_sessions where country in ('DE', 'FR') order by started_at, session_id"
    )
    rows: list[dict] = []
    cursor = None
    while True:
        body = graphql(client, served.auth("restricted"), PAGE_QUERY, name="sessions", limit=1000, cursor=cursor)
        assert "errors" not in body, body
        rows += body["data"]["metric"]["rows"]
        if (cursor := body["data"]["metric"]["nextCursor"]) is None:
            break
    assert rows == allowed
    listed = graphql(client, served.auth("viewer"), "{ metrics { name key filters splitByCountry live } }")
    rest = client.get("/v1/metrics", headers=served.auth("viewer")).json()["metrics"]
    assert [m["name"] for m in listed["data"]["metrics"]] == [m["name"] for m in rest] == list(METRICS)
    assert [m["splitByCountry"] for m in listed["data"]["metrics"]] == [m["split_by_country"] for m in rest]
    refused = graphql(client, served.auth("restricted"), PAGE_QUERY, name="daily_active_users", limit=10)
    assert "aggregated over every country" in refused["errors"][0]["message"] and refused["data"] is None
    filtered = graphql(
        client, served.auth("viewer"), PAGE_QUERY, name="events_per_hour", limit=1000, filters={"eventType": "purchase"}
    )
    assert filtered["data"]["metric"]["rows"] == direct(
        served, build, "select * from marts.fct_events_per_hour where event_type = 'purchase' order by 1, 2"
    )


@pytest.mark.parametrize(
    ("who", "query", "says"),
    [
        (None, "{ metrics { name } }", "no API key"),
        ("viewer", "{ metrics { name secret } }", "Cannot query field 'secret'"),
        ("viewer", '{ metric(name: "nope", limit: 1) { rows } }', "unknown metric 'nope'"),
        ("viewer", '{ metric(name: "sessions", limit: 5000) { rows } }', "limit must be between 1 and 1000"),
        ("viewer", '{ metric(name: "sessions", limit: 5, cursor: "forged") { rows } }', "malformed or was altered"),
        ("viewer", "{ metrics { name } " + " ".join(f"a{i}: metrics {{ name }}" for i in range(20)) + " }", "aliases"),
        (
            "viewer",
            '{ metric(name: "sessions", limit: 1) { asOf { raw { table } } ' + "__typename " * 3000 + "} }",
            "token",
        ),
    ],
)
def test_graphql_refuses_bad_queries_with_a_message(
    who: str | None, query: str, says: str, served: Served, client: TestClient
) -> None:
    body = graphql(client, served.auth(who) if who else {}, query)
    assert says in body["errors"][0]["message"], body
