"""Every dbt model, snapshot and data test compiles for the `trino` target to SQL that Trino parses.

No Trino runs here (docker-compose.yml has one): dbt compiles without connecting (`--no-introspect`,
`--no-populate-cache`), and sqlglot's Trino dialect parses each compiled statement. What the DuckDB
targets spell their own way (QUALIFY, `::` casts, DuckDB-only functions) must not reach Trino: the
models call the dispatched macros of dbt_project/macros/portable_sql.sql and raw_tables.sql instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from analytics_platform.warehouse.dbt import (
    DBT_PROJECT_DIR,
    MAX_DATE_VARIABLE,
    MIN_DATE_VARIABLE,
    TARGET_VARIABLE,
    dbt_executable,
)

pytestmark = pytest.mark.integration

# DuckDB spellings Trino rejects or reads differently, in the compiled SQL without its comments.
DUCKDB_ONLY = {
    "a `::` cast": r"::",
    "QUALIFY": r"\bqualify\b",
    "DISTINCT ON": r"\bdistinct\s+on\b",
    "an unquoted interval (`interval 1 day`)": r"\binterval\s+\d",
    "the ->> JSON operator": r"->>",
    "timestamptz": r"\btimestamptz\b",
    "list()": r"\blist\s*\(",
    "epoch()/epoch_ms()": r"\bepoch(_ms|_us)?\s*\(",
    "strftime()": r"\bstrftime\s*\(",
    "isodow()": r"\bisodow\s*\(",
    "generate_series()": r"\bgenerate_series\s*\(",
    "iceberg_scan()": r"\biceberg_scan\s*\(",
    "read_text()/read_parquet()": r"\bread_(text|parquet)\s*\(",
    "string_agg()": r"\bstring_agg\s*\(",
    "first()": r"\bfirst\s*\(",
    "any_value()": r"\bany_value\s*\(",
    "unnest() in a select list": r"(?<!\bjoin )\bunnest\s*\(",
    "integer date arithmetic (`cast(... as date) - 1`)": r"\bas date\)\s*[-+]\s*\d",
}
COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


@pytest.fixture(scope="module")
def trino_manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    target = tmp_path_factory.mktemp("trino-target")
    # A day range, so the daily facts compile their range filter (what every partitioned run uses).
    env = {**os.environ, MIN_DATE_VARIABLE: "2026-01-01", MAX_DATE_VARIABLE: "2026-01-02"}
    env.pop(TARGET_VARIABLE, None)
    command = [
        dbt_executable(),
        "compile",
        "--target",
        "trino",
        "--no-introspect",
        "--no-populate-cache",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest: dict[str, Any] = json.loads((target / "manifest.json").read_text())
    return manifest


def compiled_nodes(manifest: dict[str, Any]) -> dict[str, str]:
    return {
        unique_id: node.get("compiled_code") or ""
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] in ("model", "snapshot", "test")
    }


def test_every_model_snapshot_and_test_compiles_for_trino(trino_manifest: dict[str, Any]) -> None:
    nodes = compiled_nodes(trino_manifest)
    kinds = {node["resource_type"] for node in trino_manifest["nodes"].values()}
    assert {"model", "snapshot", "test", "seed"} <= kinds
    assert [unique_id for unique_id, sql in nodes.items() if not sql.strip()] == []
    assert trino_manifest["metadata"]["adapter_type"] == "trino"


def test_the_compiled_sql_parses_as_trino_sql(trino_manifest: dict[str, Any]) -> None:
    failures = {}
    for unique_id, sql in compiled_nodes(trino_manifest).items():
        try:
            statements = sqlglot.parse(sql, read="trino", error_level=ErrorLevel.RAISE)
        except sqlglot.errors.ParseError as error:
            failures[unique_id] = str(error).splitlines()[0]
            continue
        if len([statement for statement in statements if statement is not None]) != 1:
            failures[unique_id] = f"{len(statements)} statements, not one"
    assert failures == {}


def test_no_duckdb_only_spelling_reaches_trino(trino_manifest: dict[str, Any]) -> None:
    found = {
        unique_id: [name for name, pattern in DUCKDB_ONLY.items() if re.search(pattern, code, re.IGNORECASE)]
        for unique_id, sql in compiled_nodes(trino_manifest).items()
        if (code := COMMENT.sub("", sql))
    }
    assert {unique_id: names for unique_id, names in found.items() if names} == {}


def test_trino_builds_outside_the_published_schemas(trino_manifest: dict[str, Any]) -> None:
    """The platform publishes its marts to the catalog's `marts` namespace: Trino's go to `trino_*`."""
    built = ("model", "seed", "snapshot")
    schemas = {node["schema"] for node in trino_manifest["nodes"].values() if node["resource_type"] in built}
    layers = ("staging", "intermediate", "marts", "operations", "seeds", "snapshots")
    assert schemas == {f"trino_{layer}" for layer in layers}
    sources = {(source["database"], source["schema"]) for source in trino_manifest["sources"].values()}
    assert sources == {("iceberg", "raw")}
