"""The Postgres-wire SQL endpoint, run as users run it (`analytics-platform sql`), queried with the real
psql client, psycopg2 and SQLAlchemy over a copy of the session's landed marts."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import psycopg
import psycopg2
import pytest
import sqlalchemy

from analytics_platform.bi.sql_endpoint import COUNTRY_TABLES, SHARED_TABLES
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.serving.access import KeyStore, Role
from analytics_platform.warehouse import builds
from analytics_platform.warehouse.connections import current_build
from tests.helpers import free_port, wait_for
from tests.landed import LandedMarts
from tests.serving.conftest import CLI

pytestmark = pytest.mark.integration

COUNTRIES = ("DE", "FR")


@dataclass(frozen=True)
class Endpoint:
    port: int
    keys: dict[str, str]  # analyst, viewer, restricted (an analyst limited to COUNTRIES)
    duckdb_dir: Path
    env: dict[str, str]

    def url(self, who: str) -> str:
        return f"postgresql://{who}:{self.keys[who]}@127.0.0.1:{self.port}/warehouse"

    def connect(self, who: str) -> psycopg2.extensions.connection:
        return psycopg2.connect(self.url(who))


def _answers(port: int, key: str) -> bool:
    try:
        psycopg2.connect(f"postgresql://analyst:{key}@127.0.0.1:{port}/warehouse", connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture
def endpoint(landed_marts: LandedMarts, tmp_path: Path) -> Iterator[Endpoint]:
    duckdb_dir = tmp_path / "duckdb"
    shutil.copytree(landed_marts.settings.duckdb_path, duckdb_dir, symlinks=True)
    store = KeyStore(tmp_path / "api-keys.yaml")
    keys = {
        "analyst": store.create("analyst", Role.analyst, None),
        "viewer": store.create("viewer", Role.viewer, None),
        "restricted": store.create("restricted", Role.analyst, list(COUNTRIES)),
    }
    port = free_port()
    env = os.environ | {
        "PLATFORM_HOME": str(landed_marts.settings.home),
        "PLATFORM_DUCKDB_DIR": str(duckdb_dir),
        "PLATFORM_API_KEYS_FILE": str(store.path),
        "PLATFORM_SQL_PORT": str(port),
    }
    server = spawn([CLI, "sql"], tmp_path / "sql.log", env=env)
    try:
        wait_for(lambda: _answers(port, keys["analyst"]), 60, "the SQL endpoint to accept a login", poll_s=0.2)
        yield Endpoint(port, keys, duckdb_dir, env)
    finally:
        stop_group(server)


def direct(endpoint: Endpoint, sql: str, parameters: list | None = None) -> list[tuple]:
    build = current_build(_settings(endpoint))
    assert build is not None
    with duckdb.connect(str(build), read_only=True) as con:
        return con.execute(sql, parameters or []).fetchall()


def _settings(endpoint: Endpoint):  # type: ignore[no-untyped-def]
    from analytics_platform.settings import Settings

    return Settings(duckdb_dir=endpoint.duckdb_dir)


def test_psql_reads_the_marts_and_lists_them_from_information_schema(endpoint: Endpoint) -> None:
    query = "select activity_date, dau, wau, mau from marts.fct_daily_active_users order by activity_date"
    answer = subprocess.run(
        ["psql", endpoint.url("analyst"), "--no-psqlrc", "-At", "-F", "|", "-c", query],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = ["|".join(str(value) for value in row) for row in direct(endpoint, query)]
    assert answer.stdout.splitlines() == expected and len(expected) >= 4

    listed = subprocess.run(
        [
            "psql",
            endpoint.url("analyst"),
            "--no-psqlrc",
            "-At",
            "-c",
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert listed == [
        name
        for (name,) in direct(
            endpoint, "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
        )
    ]
    assert "fct_daily_active_users" in listed


def test_psycopg_and_sqlalchemy_as_bi_tools_use_them(endpoint: Endpoint) -> None:
    with endpoint.connect("analyst") as con, con.cursor() as cursor:
        cursor.execute(
            "select count(*), sum(page_views) from marts.fct_sessions where country = %s and page_views >= %s",
            ("DE", 2),
        )
        assert (
            cursor.fetchone()
            == direct(
                endpoint,
                "select count(*), sum(page_views) from marts.fct_sessions where country = ? and page_views >= ?",
                ["DE", 2],
            )[0]
        )
        cursor.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'fct_revenue_daily' order by ordinal_position"
        )
        assert [name for name, _ in cursor.fetchall()] == [
            name
            for (name,) in direct(
                endpoint,
                "select column_name from information_schema.columns where table_schema = 'marts' "
                "and table_name = 'fct_revenue_daily' order by ordinal_position",
            )
        ]

    # psycopg 3 binds parameters on the server (extended protocol); SQLAlchemy 2 uses it by default.
    with psycopg.connect(endpoint.url("analyst")) as con:
        rows = con.execute(
            "select count(*) from marts.fct_sessions where country = %s and page_views >= %s", ("FR", 3)
        ).fetchall()
        assert rows == direct(
            endpoint, "select count(*) from marts.fct_sessions where country = ? and page_views >= ?", ["FR", 3]
        )

    for driver in ("postgresql+psycopg", "postgresql+psycopg2"):
        engine = sqlalchemy.create_engine(endpoint.url("analyst").replace("postgresql", driver, 1))
        try:
            with engine.connect() as con:
                rows = con.execute(
                    sqlalchemy.text(
                        "select revenue_date, revenue_eur from marts.fct_revenue_daily "
                        "where revenue_date >= :since order by revenue_date"
                    ),
                    {"since": date(2000, 1, 1)},
                ).all()
            assert [tuple(row) for row in rows] == direct(
                endpoint,
                "select revenue_date, revenue_eur from marts.fct_revenue_daily where revenue_date >= '2000-01-01' "
                "order by revenue_date",
            )
            # Browsing as a BI tool's schema picker does (column reflection does not work: see docs/bi.md).
            with engine.connect() as con:
                inspector = sqlalchemy.inspect(con)
                assert "marts" in inspector.get_schema_names()
                assert sorted(inspector.get_table_names(schema="marts")) == [
                    name
                    for (name,) in direct(
                        endpoint,
                        "select table_name from information_schema.tables where table_schema = 'marts' order by 1",
                    )
                ]
        finally:
            engine.dispose()


def test_a_country_limited_user_sees_only_its_countries_on_every_mart(endpoint: Endpoint) -> None:
    marts = [
        name
        for (name,) in direct(
            endpoint, "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
        )
    ]
    checked = {"country": 0, "shared": 0, "denied": 0}
    with endpoint.connect("restricted") as con:
        con.autocommit = True
        for name in marts:
            relation = f"marts.{name}"
            with con.cursor() as cursor:
                if relation in COUNTRY_TABLES:
                    cursor.execute(f"select country, count(*) from {relation} group by 1 order by 1")
                    assert cursor.fetchall() == direct(
                        endpoint,
                        f"select country, count(*) from {relation} where country in ('DE', 'FR') group by 1 order by 1",
                    )
                    checked["country"] += 1
                elif relation in SHARED_TABLES:
                    cursor.execute(f"select count(*) from {relation}")
                    assert cursor.fetchone() == direct(endpoint, f"select count(*) from {relation}")[0]
                    checked["shared"] += 1
                else:
                    with pytest.raises(psycopg2.Error, match="aggregated over every country"):
                        cursor.execute(f"select * from {relation}")
                    checked["denied"] += 1
        # The build is not attached: nothing names it to get round the filter.
        with con.cursor() as cursor, pytest.raises(psycopg2.Error):
            cursor.execute("select count(*) from published.marts.fct_sessions")
        with con.cursor() as cursor, pytest.raises(psycopg2.Error):
            cursor.execute(f"attach '{endpoint.duckdb_dir / 'warehouse.duckdb'}' as again (read_only)")
    assert checked["country"] >= 2 and checked["shared"] == 2 and checked["denied"] >= 8


def test_sessions_cannot_write_or_touch_files(endpoint: Endpoint, tmp_path: Path) -> None:
    target = tmp_path / "leak.csv"
    statements = [
        "select * from read_csv('/etc/hostname')",
        f"copy (select 1) to '{target}'",
        f"attach '{tmp_path / 'new.duckdb'}' as scratch",
        "create table marts.scratch as select 1 as one",
        "delete from marts.fct_daily_active_users",
    ]
    with endpoint.connect("analyst") as con:
        con.autocommit = True
        for statement in statements:
            with con.cursor() as cursor, pytest.raises(psycopg2.Error):
                cursor.execute(statement)
        with con.cursor() as cursor:
            cursor.execute("set enable_external_access = true")  # acknowledged, does nothing: the config is locked
            with pytest.raises(psycopg2.Error, match="disabled"):
                cursor.execute("select * from read_csv('/etc/hostname')")
        with con.cursor() as cursor:
            cursor.execute("select count(*) from marts.fct_daily_active_users")
            assert cursor.fetchone() == direct(endpoint, "select count(*) from marts.fct_daily_active_users")[0]
    assert not target.exists() and not (tmp_path / "new.duckdb").exists()


def test_logins_are_api_keys_with_the_analyst_role(endpoint: Endpoint) -> None:
    with pytest.raises(psycopg2.OperationalError, match='password authentication failed for user "analyst"'):
        psycopg2.connect(f"postgresql://analyst:wrong@127.0.0.1:{endpoint.port}/warehouse")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):  # someone else's key
        psycopg2.connect(f"postgresql://viewer:{endpoint.keys['analyst']}@127.0.0.1:{endpoint.port}/warehouse")
    with pytest.raises(psycopg2.OperationalError, match="needs role analyst"):
        endpoint.connect("viewer")


def test_a_session_keeps_its_build_and_a_new_one_sees_the_newest(endpoint: Endpoint) -> None:
    query = "select sum(dau) from marts.fct_daily_active_users"
    (before,) = direct(endpoint, query)[0]
    with endpoint.connect("analyst") as old:
        settings = _settings(endpoint)
        published = current_build(settings)
        assert published is not None
        newer = endpoint.duckdb_dir / "builds" / f"test-{uuid.uuid4().hex[:8]}" / builds.BUILD_FILE
        newer.parent.mkdir(parents=True)
        shutil.copyfile(published, newer)
        with duckdb.connect(str(newer)) as con:
            con.execute("update marts.fct_daily_active_users set dau = dau + 1")
            days = con.execute("select count(*) from marts.fct_daily_active_users").fetchone()[0]
        builds.publish(settings, newer)

        with old.cursor() as cursor:
            cursor.execute(query)
            assert cursor.fetchone() == (before,)
        with endpoint.connect("analyst") as new, new.cursor() as cursor:
            cursor.execute(query)
            assert cursor.fetchone() == (before + days,)


def test_sessions_opening_at_once_all_log_in_and_read_the_same_build(endpoint: Endpoint) -> None:
    query = "select sum(dau) from marts.fct_daily_active_users"
    (expected,) = direct(endpoint, query)[0]
    answers: list[object] = []

    def session(who: str) -> None:
        try:
            with psycopg.connect(endpoint.url(who)) as con:
                answers.append(con.execute(query).fetchone()[0] if who == "analyst" else "restricted")
        except psycopg.Error as error:
            answers.append(error)

    threads = [threading.Thread(target=session, args=("analyst" if i % 4 else "restricted",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, answers)) == sorted([str(expected)] * 9 + ["restricted"] * 3)
