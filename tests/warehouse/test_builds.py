"""The marts are published by an atomic pointer swap: readers never see a half-built file."""

from __future__ import annotations

import duckdb
import pytest

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.settings import get_settings
from analytics_platform.warehouse import builds, connections

pytestmark = pytest.mark.fast


def write_marker(path, value: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create or replace table marker as select ? as value", [value])


def test_readers_keep_their_build_while_a_new_one_is_published() -> None:
    settings = get_settings()
    catalog = load_catalog(settings)
    with builds.build_lock(settings):
        first = builds.prepare_build(settings, catalog)
        write_marker(first, 1)
        builds.publish(settings, first)
    reader = connections.connect_marts(settings)
    assert reader.execute("select value from marker").fetchone() == (1,)
    # raw views exist even before any data landed, with the tables' columns
    assert reader.execute("select count(*) from raw.purchase").fetchone() == (0,)
    # and so do the snapshot metadata views the operations models read
    assert reader.execute("select count(*) from raw.table_snapshots").fetchone() == (0,)
    assert reader.execute("select count(*), count(summary) from raw.ingest_snapshots").fetchone() == (0, 0)

    with builds.build_lock(settings):
        second = builds.prepare_build(settings, catalog)  # starts as a copy of the published build
        with duckdb.connect(str(second), read_only=True) as con:
            assert con.execute("select value from marker").fetchone() == (1,)
        write_marker(second, 2)
        assert connections.current_build(settings) == first  # unpublished work is invisible
        builds.publish(settings, second)

    assert reader.execute("select value from marker").fetchone() == (1,)  # an open reader is undisturbed
    reader.close()
    with connections.connect_marts(settings) as fresh:
        assert fresh.execute("select value from marker").fetchone() == (2,)


def test_a_build_drops_what_the_dbt_project_no_longer_defines(tmp_path) -> None:
    build = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(build)) as con:
        for schema in ("marts", "staging", "raw", "platform"):
            con.execute(f"create schema {schema}")
        con.execute("create table marts.fct_kept as select 1 as x")
        con.execute("create table marts.fct_renamed_away as select 1 as x")  # an old name of a model
        con.execute("create view staging.stg_gone as select 1 as x")
        con.execute("create view raw.purchase as select 1 as x")  # not dbt's: raw views and pins stay
        con.execute("create table platform.raw_snapshot_pins as select 1 as x")
    dropped = builds.drop_orphans(build, {("marts", "fct_kept"), ("staging", "stg_kept")})
    assert dropped == ["marts.fct_renamed_away", "staging.stg_gone"]
    with duckdb.connect(str(build), read_only=True) as con:
        left = con.execute("select schema_name || '.' || table_name from duckdb_tables() order by 1").fetchall()
        views = con.execute("select schema_name || '.' || view_name from duckdb_views() where not internal").fetchall()
    assert [name for (name,) in left] == ["marts.fct_kept", "platform.raw_snapshot_pins"]
    assert [name for (name,) in views] == ["raw.purchase"]
