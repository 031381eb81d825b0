"""Non-production copies of the marts, with every personal identifier replaced by a keyed pseudonym.

Which columns identify a person is declared once per layer: the event schemas mark fields ``"pii": true``
(``user_id``), and the dbt models' YAML marks the mart columns derived from them
``config: {meta: {pii: true}}`` (``dim_users.user_id``, ``fct_sessions.session_id``, whose synthetic ids
embed the user id). An export
replaces each marked value by ``HMAC-SHA256(PLATFORM_PII_KEY, value)``: deterministic, so the same user has
the same pseudonym in every table and joins still hold, and not reversible without the key (a plain hash
of ``u000042`` is, by trying every id). A column named like a schema's pii field is replaced even when its
model forgot the mark: a forgotten mark must not leak.

Only tables are exported: the build's views (``raw``, staging, intermediate) read the production raw
Iceberg tables, which a copy must not reach.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml
from pydantic import SecretStr

from analytics_platform.contracts.registry import load_registry
from analytics_platform.exceptions import ConfigError
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.dbt import DBT_PROJECT_DIR

PSEUDONYM_PREFIX = "p_"
PSEUDONYM_HEX_CHARS = 32  # 128 bits: no collision among billions of ids
_UDF = "pii_pseudonym"
_SHA256_BLOCK = 64


def pii_key(settings: Settings) -> bytes:
    """The HMAC key (PLATFORM_PII_KEY); raises ConfigError saying how to set it when it is missing."""
    key: SecretStr | None = settings.pii_key
    if key is None or not key.get_secret_value():
        raise ConfigError(
            "PLATFORM_PII_KEY is not set: pseudonymizing needs a secret key (e.g. `openssl rand -hex 32`). Keep it "
            "out of the copy you hand over, and use the same key for every copy that must join with another."
        )
    return key.get_secret_value().encode()


def pseudonym(value: str, key: bytes) -> str:
    """The pseudonym of ``value`` under ``key``: ``p_`` and the first 128 bits of its HMAC-SHA256, in hex."""
    digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    return f"{PSEUDONYM_PREFIX}{digest[:PSEUDONYM_HEX_CHARS]}"


def schema_pii_names(settings: Settings) -> frozenset[str]:
    """The top-level names of the fields the event schemas mark ``pii`` (``user_id``; a payload field's own name)."""
    return frozenset(
        name.removeprefix("payload.")
        for contract in load_registry(settings.schema_path)
        for name in contract.pii_fields
    )


def marked_pii_columns(project_dir: Path = DBT_PROJECT_DIR) -> dict[str, frozenset[str]]:
    """The columns each dbt model, snapshot or seed marks ``config: {meta: {pii: true}}`` (or the older
    ``meta: {pii: true}``) in its YAML, by relation name."""
    marked: dict[str, set[str]] = {}
    for path in sorted(project_dir.glob("**/*.yml")):
        if "target" in path.relative_to(project_dir).parts or path.name in {"dbt_project.yml", "profiles.yml"}:
            continue
        document = yaml.safe_load(path.read_text()) or {}
        for kind in ("models", "snapshots", "seeds"):
            for node in document.get(kind) or []:
                for column in node.get("columns") or []:
                    if _meta(column).get("pii") is True:
                        marked.setdefault(node["name"], set()).add(column["name"])
    return {name: frozenset(columns) for name, columns in marked.items()}


def _meta(column: dict[str, Any]) -> dict[str, Any]:
    """A column's meta, written either as ``meta:`` or (dbt >= 1.10) as ``config: {meta: ...}``."""
    return dict(column.get("meta") or {}) | dict((column.get("config") or {}).get("meta") or {})


def create_pseudonym_macro(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """``pii_pseudonym(v)`` on ``con``, equal to :func:`pseudonym`: RFC 2104's HMAC spelled with DuckDB's
    ``sha256`` (DuckDB has no keyed hash, and Python UDFs need numpy). The key's pads are session variables
    and the macro is temporary: neither is written to the export."""
    block = hashlib.sha256(key).digest() if len(key) > _SHA256_BLOCK else key
    block = block.ljust(_SHA256_BLOCK, b"\0")
    con.execute("set variable pii_ipad = ?", [bytes(b ^ 0x36 for b in block)])
    con.execute("set variable pii_opad = ?", [bytes(b ^ 0x5C for b in block)])
    inner = "unhex(sha256(getvariable('pii_ipad') || encode(v)))"
    con.execute(
        f"create temp macro {_UDF}(v) as "
        f"'{PSEUDONYM_PREFIX}' || left(sha256(getvariable('pii_opad') || {inner}), {PSEUDONYM_HEX_CHARS})"
    )


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: tables copied, and which of their columns were pseudonymized."""

    source: Path
    destination: Path
    tables: dict[str, int] = field(default_factory=dict)  # "schema.table" -> rows
    pseudonymized: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "schema.table" -> columns


def export_pseudonymized(settings: Settings, destination: Path) -> ExportReport:
    """Copy every table of the published marts build into a new DuckDB file at ``destination``, with the
    pii columns replaced by their pseudonyms.

    Raises:
        ConfigError: PLATFORM_PII_KEY is unset, nothing is published yet, or ``destination`` exists.
    """
    key = pii_key(settings)
    source = current_build(settings)
    if source is None:
        raise ConfigError(
            f"no published marts under {settings.duckdb_path} (PLATFORM_DUCKDB_DIR) to export; "
            "run `analytics-platform build` first"
        )
    if destination.exists():
        raise ConfigError(f"{destination} exists; an export writes a new file: remove it or choose another path")
    destination.parent.mkdir(parents=True, exist_ok=True)
    by_name = schema_pii_names(settings)
    marked = marked_pii_columns()
    tables: dict[str, int] = {}
    replaced: dict[str, tuple[str, ...]] = {}
    con = duckdb.connect(str(destination))
    try:
        create_pseudonym_macro(con, key)
        con.execute(f"attach '{source}' as src (read_only)")
        relations = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'src' order by all"
        ).fetchall()
        for schema, table in relations:
            columns = [
                name
                for (name,) in con.execute(
                    "select column_name from duckdb_columns() where database_name = 'src' and schema_name = ? "
                    "and table_name = ? order by column_index",
                    [schema, table],
                ).fetchall()
            ]
            pii = tuple(c for c in columns if c in by_name or c in marked.get(table, frozenset()))
            replace = ", ".join(f'{_UDF}(cast("{c}" as varchar)) as "{c}"' for c in pii)
            select = f"* replace ({replace})" if pii else "*"
            con.execute(f'create schema if not exists "{schema}"')
            con.execute(f'create table "{schema}"."{table}" as select {select} from src."{schema}"."{table}"')
            name = f"{schema}.{table}"
            (rows,) = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone() or (0,)
            tables[name] = int(rows)
            if pii:
                replaced[name] = pii
        con.execute("detach src")
    except BaseException:
        con.close()
        destination.unlink(missing_ok=True)  # half an export might hold unreplaced rows
        Path(f"{destination}.wal").unlink(missing_ok=True)
        raise
    con.close()
    return ExportReport(source, destination, tables, replaced)
