"""Superset on the session's published marts, started as `make bi` starts it (`analytics-platform bi start`).

Every chart of the product and operations dashboards answers, through Superset's REST API, exactly the
numbers the same aggregation gives over the build in DuckDB; a second import updates by UUID and duplicates
nothing; and each dashboard draws every chart in headless Chromium (logged in through the form), saved as
docs/images/superset-<dashboard>.png (the product one is in the README).

Superset needs its own venv (~700 MB): ``TEST_SUPERSET_VENV`` (default ``.superset/venv`` in the repo, the
one ``make bi`` uses) is installed on first use, ~1 min with uv. Marked ``superset``: ``make test`` leaves
these tests to their own CI stage, ``make test-superset``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from analytics_platform.bi import superset
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.settings import Settings
from tests.helpers import free_port, wait_for
from tests.landed import LandedMarts

pytestmark = [pytest.mark.integration, pytest.mark.superset]

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("TEST_SUPERSET_VENV") or REPO / ".superset" / "venv").resolve()
CLI = str(Path(sys.executable).parent / "analytics-platform")
SCREENSHOTS = REPO / "docs" / "images"

# Each chart's numbers, aggregated by hand over the marts: what the chart must show, value for value.
PRODUCT = {
    "Active users (DAU, WAU, MAU)": """
        select activity_date, sum(dau), sum(wau), sum(mau)
        from marts.fct_daily_active_users group by 1 order by 1""",
    "Revenue and ARPU per day": """
        select revenue_date, sum(revenue_eur), sum(revenue_eur) / sum(active_users)
        from marts.fct_revenue_daily group by 1 order by 1""",
    "Conversion rate by product category": """
        select category, sum(purchasers) * 1.0 / sum(viewers)
        from marts.fct_category_conversion_daily group by 1 order by 1""",
    "Funnel drop-offs by day": """
        select activity_date, sum(visitors - cart_users), sum(cart_users - checkout_users),
               sum(checkout_users - purchasers)
        from marts.fct_funnel_daily where category = 'all' group by 1 order by 1""",
    "Cohort retention": """
        select weeks_since_signup, strftime(signup_week, '%Y-%m-%d') as cohort,
               sum(active_users) * 1.0 / sum(cohort_size)
        from marts.fct_cohort_retention group by 1, 2 order by 1, 2""",
}
# The operations dashboard's, over the operations models (the landed marts hold a few dead letters).
OPERATIONS = {
    "Events landed per minute by type": """
        select landed_minute, event_type, sum(events_landed)
        from operations.ops_landings_per_minute group by 1, 2 order by 1, 2""",
    "Dead-letter rate per minute by topic": """
        select landed_minute, event_type,
               sum(dead_letters) * 1.0 / nullif(sum(events_landed) + sum(dead_letters), 0)
        from operations.ops_landings_per_minute group by 1, 2 order by 1, 2""",
    "Dead letters by failed check": """
        select failed_check, event_type, sum(dead_letters)
        from operations.ops_dead_letter_checks group by 1, 2 order by 1, 2""",
    "Ingest runs by table": """
        select table_name, max(duration_s), max(max_commit_s)
        from operations.ops_ingest_runs group by 1 order by 1""",
    "Raw table freshness": """
        select table_name, rows_landed, newest_event_at, newest_ingested_at, ingest_lag_s, event_lag_s
        from operations.ops_raw_freshness order by table_name""",
    "Mart freshness": """
        select mart_name, grain, newest_period_end, built_at
        from operations.ops_mart_freshness order by mart_name""",
}
EXPECTED = {"product": PRODUCT, "operations": OPERATIONS}


@dataclass(frozen=True)
class RunningSuperset:
    port: int
    settings: Settings
    home: superset.SupersetHome
    password: str
    log: Path

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
        )
        if body is not None:  # a JSON content type on a GET without a body is a 400
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def token(self) -> str:
        login = {"username": superset.ADMIN_USER, "password": self.password, "provider": "db", "refresh": False}
        return str(self.call("POST", "/api/v1/security/login", login)["access_token"])

    def listing(self, resource: str, token: str, columns: list[str]) -> list[dict[str, Any]]:
        query = urllib.parse.quote(f"(columns:!({','.join(columns)}),page_size:100)")
        return list(self.call("GET", f"/api/v1/{resource}/?q={query}", token=token)["result"])


@pytest.fixture(scope="module")
def running(landed_marts: LandedMarts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSuperset]:
    """`analytics-platform bi` on a fresh platform home that reads the session's published marts."""
    superset.install(VENV, print)  # reused across runs; installs only when missing or the pins changed
    root = tmp_path_factory.mktemp("superset")
    port = free_port()
    variables = {
        "PLATFORM_HOME": str(root / "platform"),
        "PLATFORM_DUCKDB_DIR": str(landed_marts.settings.duckdb_path),
        "PLATFORM_SUPERSET_VENV": str(VENV),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")} | variables
    settings = Settings(
        home=root / "platform",
        duckdb_dir=landed_marts.settings.duckdb_path,
        superset_venv=VENV,
        superset_admin_password=None,
    )
    log = root / "bi.log"
    server = spawn([CLI, "bi", "start", "--port", str(port)], log, env=env)
    try:
        wait_for(
            lambda: "Ctrl-C stops it" in log.read_text() or server.poll() is not None,
            420,
            "analytics-platform bi start to print the login",
        )
        assert server.poll() is None, log.read_text()
        password = superset.admin_password(settings)
        yield RunningSuperset(port, settings, superset.SupersetHome.from_settings(settings), password, log)
    finally:
        stop_group(server)


def _plain(value: object) -> object:
    """A DuckDB value as Superset's JSON has it: dates and times as epoch milliseconds, decimals as floats."""
    if isinstance(value, dt.datetime):
        return value.timestamp() * 1000
    if isinstance(value, dt.date):
        return float(dt.datetime.combine(value, dt.time(), dt.UTC).timestamp() * 1000)
    if isinstance(value, Decimal):
        return float(value)
    return value


def test_login_is_printed(running: RunningSuperset) -> None:
    output = running.log.read_text()
    assert f"http://127.0.0.1:{running.port}/superset/dashboard/product/" in output
    assert f"http://127.0.0.1:{running.port}/superset/dashboard/operations/" in output
    assert f"login: admin / {running.password}" in output
    assert (running.home.state / "admin-password").stat().st_mode & 0o777 == 0o600
    assert (running.home.state / "secret-key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("dashboard", sorted(EXPECTED))
def test_every_chart_shows_the_marts_numbers(
    running: RunningSuperset, landed_marts: LandedMarts, dashboard: str
) -> None:
    expected = EXPECTED[dashboard]
    token = running.token()
    charts = running.call("GET", f"/api/v1/dashboard/{dashboard}/charts", token=token)["result"]
    assert sorted(chart["slice_name"] for chart in charts) == sorted(expected), "a chart without a check here"
    for chart in charts:
        # GET .../data/ runs the query saved with the chart (its query_context in the YAML).
        result = running.call("GET", f"/api/v1/chart/{chart['id']}/data/", token=token)["result"][0]
        got = [[row[column] for column in result["colnames"]] for row in result["data"]]
        want = [[_plain(value) for value in row] for row in landed_marts.query(expected[chart["slice_name"]])]
        assert got == want, chart["slice_name"]
        assert len(got) > 1, f"{chart['slice_name']}: too few rows to mean anything"


def test_sql_lab_reads_the_marts_but_no_files(running: RunningSuperset, landed_marts: LandedMarts) -> None:
    token = running.token()
    (database,) = running.listing("database", token, ["id"])

    # SQL Lab's API wants a CSRF token, bound to the session cookie that fetching it sets.
    base = f"http://127.0.0.1:{running.port}"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    csrf = session.get(f"{base}/api/v1/security/csrf_token/", timeout=60).json()["result"]

    def sql_lab(sql: str) -> tuple[int, Any]:
        body = {"database_id": database["id"], "sql": sql, "schema": "marts", "runAsync": False}
        answer = session.post(
            f"{base}/api/v1/sqllab/execute/", json=body, headers={"X-CSRFToken": csrf, "Referer": base}, timeout=60
        )
        return answer.status_code, answer.json() if answer.ok else answer.text

    status, answer = sql_lab("select count(*) as days from marts.fct_daily_active_users")
    assert status == 200, answer
    assert answer["data"] == [{"days": landed_marts.query("select count(*) from marts.fct_daily_active_users")[0][0]}]
    status, refused = sql_lab("select * from read_csv('/etc/hostname')")
    assert status >= 400 and "file system operations are disabled" in refused, refused


def _counts(running: RunningSuperset, token: str) -> dict[str, int]:
    return {
        resource: len(running.listing(resource, token, ["id"]))
        for resource in ("database", "dataset", "chart", "dashboard")
    }


def test_reimport_updates_by_uuid_and_never_duplicates(running: RunningSuperset, tmp_path: Path) -> None:
    token = running.token()
    before = _counts(running, token)
    assert before == {"database": 1, "dataset": 10, "chart": 11, "dashboard": 2}

    edited = tmp_path / "dashboards"
    shutil.copytree(superset.DASHBOARDS_DIR, edited)
    chart_file = edited / "charts" / "product_category_conversion.yaml"
    chart = yaml.safe_load(chart_file.read_text())
    chart["slice_name"] = "Conversion by category (edited)"
    chart_file.write_text(yaml.safe_dump(chart))
    try:
        superset.import_dashboards(running.home, running.settings, print, source=edited)
        titles = {c["uuid"]: c["slice_name"] for c in running.listing("chart", token, ["uuid", "slice_name"])}
        assert titles[chart["uuid"]] == "Conversion by category (edited)"
        assert _counts(running, token) == before
    finally:
        superset.import_dashboards(running.home, running.settings, print)
    titles = {c["uuid"]: c["slice_name"] for c in running.listing("chart", token, ["uuid", "slice_name"])}
    assert titles[chart["uuid"]] == "Conversion rate by product category"
    assert _counts(running, token) == before


@pytest.mark.parametrize("dashboard", sorted(EXPECTED))
def test_dashboard_draws_every_chart_in_chromium(running: RunningSuperset, tmp_path: Path, dashboard: str) -> None:
    expected = EXPECTED[dashboard]
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are needed (.ci/run installs them)"
    shot = tmp_path / f"{dashboard}.png"
    with contextlib.suppress(FileNotFoundError):
        shot.unlink()
    done = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-I",
            str(Path(__file__).with_name("screenshot.py")),
            f"http://127.0.0.1:{running.port}",
            dashboard,
            superset.ADMIN_USER,
            str(shot),
        ],
        env=os.environ | {"SUPERSET_PASSWORD": running.password, "CHROMIUM": chromium, "CHROMEDRIVER": driver},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = json.loads(done.stdout.strip().splitlines()[-1])
    assert page["charts"] == len(expected), page
    assert page["drawn"] == page["charts"], f"charts without an ECharts drawing or table rows: {page}"
    assert page["problems"] == [] and not page["no_results_text"], page
    assert sorted(page["titles"]) == sorted(expected), page
    assert page["colours"] > 500, f"the screenshot looks blank: {page}"
    assert 10_000 < shot.stat().st_size < 400_000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / f"superset-{dashboard}.png")
