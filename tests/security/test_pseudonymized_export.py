"""Pseudonymized exports of real marts: no raw identifier leaves, joins still hold, the key decides."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
from pydantic import SecretStr

from analytics_platform.security.pseudonymize import export_pseudonymized, marked_pii_columns, pseudonym
from analytics_platform.settings import Settings
from tests.landed import LandedMarts

pytestmark = pytest.mark.integration

KEY, OTHER_KEY = "test-key-1", "test-key-2"


def _keyed(landed: LandedMarts, key: str) -> Settings:
    return landed.settings.model_copy(update={"pii_key": SecretStr(key)})


def _strings(path: Path) -> dict[str, list[str]]:
    """Every string value of every table of ``path`` (varchar columns, and other columns cast to text)."""
    found: dict[str, list[str]] = {}
    with duckdb.connect(str(path), read_only=True) as con:
        for schema, table in con.execute("select schema_name, table_name from duckdb_tables()").fetchall():
            columns = [c for (c,) in con.execute(f'select column_name from (describe "{schema}"."{table}")').fetchall()]
            text = " || '|' || ".join(f"coalesce(cast(\"{c}\" as varchar), '')" for c in columns)
            rows = con.execute(f'select {text} from "{schema}"."{table}"').fetchall()
            found[f"{schema}.{table}"] = [row[0] for row in rows]
    return found


def test_an_export_holds_no_raw_identifier_and_still_joins(landed_marts: LandedMarts, tmp_path: Path) -> None:
    settings = _keyed(landed_marts, KEY)
    export = tmp_path / "export.duckdb"
    report = export_pseudonymized(settings, export)
    assert report.tables and all(rows >= 0 for rows in report.tables.values())
    assert {"marts.dim_users", "marts.fct_sessions", "snapshots.snap_users"} <= set(report.pseudonymized)

    # No generated user id appears anywhere, not even inside another value (a synthetic session id).
    identifiers = {event["user_id"] for event in landed_marts.dataset.events} - {"catalog"}
    pattern = re.compile("|".join(sorted(identifiers)))
    for table, values in _strings(export).items():
        leaked = [value for value in values if pattern.search(value)]
        assert not leaked, f"{table} holds raw user ids: {leaked[:3]}"

    # The same user has the same pseudonym in every table: the joins BI runs give the same answers.
    join = "select count(*), count(u.user_id) from marts.fct_sessions s left join marts.dim_users u using (user_id)"
    with (
        duckdb.connect(str(export), read_only=True) as pseudonymized,
        duckdb.connect(str(landed_marts.marts), read_only=True) as original,
    ):
        assert pseudonymized.execute(join).fetchall() == original.execute(join).fetchall()
        history = "select count(distinct user_id) from snapshots.snap_users join marts.dim_users using (user_id)"
        assert pseudonymized.execute(history).fetchall() == original.execute(history).fetchall()
        some_user = original.execute("select user_id from marts.dim_users order by user_id limit 1").fetchone()
        assert some_user is not None
        expected = pseudonym(some_user[0], KEY.encode())
        assert pseudonymized.execute(
            "select count(*) from marts.dim_users where user_id = ?", [expected]
        ).fetchone() == (1,)

    # Another key, other pseudonyms.
    other = tmp_path / "other.duckdb"
    export_pseudonymized(_keyed(landed_marts, OTHER_KEY), other)
    users = "select list(user_id order by user_id) from marts.dim_users"
    with duckdb.connect(str(export), read_only=True) as one, duckdb.connect(str(other), read_only=True) as two:
        first, second = one.execute(users).fetchone(), two.execute(users).fetchone()
    assert first is not None and second is not None
    assert not set(first[0]) & set(second[0])


def test_every_mart_column_holding_user_ids_is_marked(landed_marts: LandedMarts) -> None:
    """The fail-closed rule (columns named user_id) must not be what protects a mart: its YAML says so."""
    identifiers = sorted({event["user_id"] for event in landed_marts.dataset.events} - {"catalog"})
    pattern = "|".join(identifiers)
    marked = marked_pii_columns()
    unmarked = []
    with duckdb.connect(str(landed_marts.marts), read_only=True) as con:
        columns = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() c join duckdb_tables() t "
            "using (database_name, schema_name, table_name) where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            hit = con.execute(
                f'select 1 from "{schema}"."{table}" where regexp_matches("{column}", ?) limit 1', [pattern]
            ).fetchall()
            if hit and column not in marked.get(table, frozenset()):
                unmarked.append(f"{schema}.{table}.{column}")
    assert not unmarked, f"mark these columns `meta: {{pii: true}}` in their model's YAML: {unmarked}"
