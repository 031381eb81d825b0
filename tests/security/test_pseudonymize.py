"""Pseudonyms: which fields are pii, and the keyed HMAC that replaces them (exports: test_pseudonymized_export)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from analytics_platform.contracts.registry import load_registry
from analytics_platform.exceptions import ConfigError, SchemaRegistryError
from analytics_platform.security.pseudonymize import create_pseudonym_macro, pii_key, pseudonym
from analytics_platform.settings import get_settings
from tests.helpers import schema_dir_with_v2

pytestmark = pytest.mark.fast


def test_every_schema_marks_user_id_pii() -> None:
    for contract in load_registry():
        assert "user_id" in contract.pii_fields, contract.event_type


def test_a_pii_mark_must_be_a_boolean(tmp_path: Path) -> None:
    def mark(schema: dict) -> None:
        next(f for f in schema["fields"] if f["name"] == "user_id")["pii"] = "yes"

    with pytest.raises(SchemaRegistryError, match='"pii" must be true or false'):
        load_registry(schema_dir_with_v2(tmp_path, "purchase", mark))


def test_pseudonyms_are_keyed_and_deterministic() -> None:
    assert pseudonym("u000001", b"k") == pseudonym("u000001", b"k")
    assert pseudonym("u000001", b"k") != pseudonym("u000002", b"k")
    assert pseudonym("u000001", b"k") != pseudonym("u000001", b"other")
    assert re.fullmatch(r"p_[0-9a-f]{32}", pseudonym("u000001", b"k"))


def test_a_missing_key_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="PLATFORM_PII_KEY"):
        pii_key(get_settings())


def test_the_cli_refuses_an_unpseudonymized_export(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from analytics_platform.cli import app

    result = CliRunner().invoke(app, ["export", str(tmp_path / "copy.duckdb")])
    assert result.exit_code == 1
    assert "--pseudonymize" in result.output
    assert not (tmp_path / "copy.duckdb").exists()


@pytest.mark.parametrize("key", [b"k", b"x" * 64, b"long" * 40])
def test_the_sql_pseudonym_equals_the_python_one(key: bytes) -> None:
    with duckdb.connect() as con:
        create_pseudonym_macro(con, key)
        assert con.execute("select pii_pseudonym('u000042'), pii_pseudonym(null)").fetchone() == (
            pseudonym("u000042", key),
            None,
        )
