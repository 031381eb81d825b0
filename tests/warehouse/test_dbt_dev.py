"""The analytics engineer's loop (docs/dbt-development.md): dbt run by hand from ``dbt_project/``, on the
default ``dev`` target, sees the raw tables' current snapshots and never touches the published marts.

dbt runs as a person would run it: a subprocess in a copy of ``dbt_project`` (the repository's stays
as it is), whose parent holds the platform home as ``.platform`` (the profile's default), with no
``PLATFORM_*`` variable set and the venv not on PATH.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import ConfigError
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.local.orchestration import build_marts
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from analytics_platform.warehouse.builds import publish
from analytics_platform.warehouse.connections import current_build, published_link
from analytics_platform.warehouse.dbt import DBT_PROJECT_DIR
from analytics_platform.warehouse.dev import prepare_dev_warehouse
from tests.helpers import produce_events

pytestmark = pytest.mark.integration

# The seed's fixed reference rates (dbt_project/seeds/currency_rates.csv).
EUR_PER_UNIT = {"EUR": Decimal("1.00"), "GBP": Decimal("1.17"), "USD": Decimal("0.92")}
# What an analytics engineer adds to fct_revenue_daily in the test: orders beyond each purchaser's first.
EDIT = ("        *,\n", "        *,\n        orders - purchasers as repeat_orders,\n")


def revenue_by_day(purchases: list[dict[str, Any]]) -> dict[date, tuple[Decimal, int, int]]:
    """(revenue in EUR, orders, purchasers) per UTC day: each purchase rounded to cents, then summed."""
    revenue: dict[date, Decimal] = defaultdict(Decimal)
    orders: dict[date, int] = defaultdict(int)
    users: dict[date, set[str]] = defaultdict(set)
    for purchase in purchases:
        day = date.fromisoformat(purchase["timestamp"][:10])
        amount = Decimal(str(purchase["payload"]["revenue"])) * EUR_PER_UNIT[purchase["payload"]["currency"]]
        revenue[day] += amount.quantize(Decimal("0.01"), ROUND_HALF_UP)
        orders[day] += 1
        users[day].add(purchase["user_id"])
    return {day: (revenue[day], orders[day], len(users[day])) for day in revenue}


def dbt(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dbt <args>`` as typed in ``project``: this environment's dbt by its path, no venv on PATH, no
    PLATFORM_* setting (the profile's defaults apply)."""
    venv_bin = Path(sys.executable).parent
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PLATFORM_", "DBT_")) and name not in {"DAGSTER_HOME", "VIRTUAL_ENV"}
    }
    environment["PATH"] = os.pathsep.join(
        entry for entry in os.environ.get("PATH", os.defpath).split(os.pathsep) if Path(entry) != venv_bin
    )
    result = subprocess.run(
        [str(venv_bin / "dbt"), *args], cwd=project, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"dbt {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def shown_rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The rows ``dbt show --output json --log-format json`` printed."""
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if "preview" in event["data"]:
            return list(json.loads(event["data"]["preview"]))
    raise AssertionError(f"no preview in dbt show's output:\n{result.stdout}")


def fingerprint(settings: Settings) -> tuple[Path, str, list[str]]:
    """What the published marts are: the build the link points at, its bytes, and every build there is."""
    published = current_build(settings)
    assert published is not None
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    builds = sorted(str(path.relative_to(settings.duckdb_path)) for path in settings.duckdb_path.glob("builds/**/*"))
    return published, digest, builds


def test_a_model_edit_shows_in_dbt_show_on_the_dev_target_and_the_published_marts_stay(
    broker: Settings, tmp_path: Path
) -> None:
    settings = broker
    events = generate_events(3_000, seed=13, days=2)
    purchases = [event for event in events if event["event_type"] == "purchase"]
    # Half the purchases land only after the marts were published: the dev target must see them.
    late = {event["event_id"] for event in purchases[1::2]}
    produce_events(settings, [event for event in events if event["event_id"] not in late])
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)
    build_marts(settings)
    produce_events(settings, [event for event in purchases if event["event_id"] in late])
    ingest_until_caught_up(settings, event_types()["purchase"].topic)
    published_before = fingerprint(settings)

    repository = tmp_path / "clone"
    project = repository / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (repository / ".platform").symlink_to(settings.home)  # the profile's default home, seen from dbt_project/

    dbt(project, "build", "--select", "stg_purchases")  # failed with `schema "raw" does not exist` before
    dbt(project, "build", "--select", "fct_revenue_daily")

    dev_file = settings.duckdb_path / "dev" / "warehouse.duckdb"
    expected = revenue_by_day(purchases)
    with duckdb.connect(str(dev_file), read_only=True) as con:
        days = [day for (day,) in con.execute("select date_day from marts.dim_dates order by 1").fetchall()]
        built = con.execute(
            "select revenue_date, revenue_eur, orders, purchasers from marts.fct_revenue_daily order by 1"
        ).fetchall()
    assert set(expected) <= set(days)  # the upstream date spine came with the published build's copy
    assert built == [(day, *expected.get(day, (Decimal("0.00"), 0, 0))) for day in days]
    assert sum(orders for _, _, orders, _ in built) == len(purchases)

    model = project / "models" / "marts" / "daily" / "fct_revenue_daily.sql"
    source = model.read_text()
    assert source.count(EDIT[0]) == 1
    model.write_text(source.replace(*EDIT))
    show = ["show", "--select", "fct_revenue_daily", "--limit", "100", "--output", "json"]
    shown = shown_rows(dbt(project, "--log-format", "json", *show))
    assert [(row["revenue_date"], row["repeat_orders"]) for row in shown] == [
        (day.isoformat(), expected[day][1] - expected[day][2] if day in expected else 0) for day in days
    ]
    assert any(row["repeat_orders"] for row in shown)  # the data has users who ordered twice a day

    dbt(project, "test", "--select", "fct_revenue_daily")
    dbt(project, "docs", "generate")
    catalog = json.loads((project / "target" / "catalog.json").read_text())
    assert "model.analytics_platform.fct_revenue_daily" in catalog["nodes"]

    assert fingerprint(settings) == published_before
    assert published_link(settings).resolve() != dev_file.resolve()
    with duckdb.connect(str(published_before[0]), read_only=True) as con:
        (published_orders,) = con.execute("select sum(orders) from marts.fct_revenue_daily").fetchone() or (0,)
    assert published_orders == len(purchases) - len(late)


def test_the_dev_target_never_opens_the_published_marts_or_a_build() -> None:
    settings = get_settings()
    build = settings.duckdb_path / "builds" / "20261201T000000-test" / "warehouse.duckdb"
    build.parent.mkdir(parents=True)
    duckdb.connect(str(build)).close()
    publish(settings, build)

    for path in (published_link(settings), build, build.with_name("other.duckdb")):
        with pytest.raises(ConfigError, match="must not write"):
            prepare_dev_warehouse(settings, path)
    # A copy of the build must keep its file name: its views name the catalog after it.
    with pytest.raises(ConfigError, match="must be named warehouse.duckdb"):
        prepare_dev_warehouse(settings, settings.duckdb_path / "dev" / "mine.duckdb")
    assert not (settings.duckdb_path / "dev").exists() or not any((settings.duckdb_path / "dev").iterdir())
