"""Erasure's rules that need no platform: which dead letters are a user's, and what the command refuses."""

from __future__ import annotations

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from analytics_platform.cli import app
from analytics_platform.exceptions import ConfigError
from analytics_platform.lakehouse.tables import DEAD_LETTER_SCHEMA
from analytics_platform.security.erasure import dead_letter_match, erase_user
from analytics_platform.settings import get_settings

pytestmark = pytest.mark.fast


def test_a_dead_letter_is_the_users_by_key_or_by_the_quoted_id() -> None:
    rows = pa.Table.from_pylist(
        [
            {"kafka_key": b"u000042", "raw_value": b"{not json"},
            {"kafka_key": None, "raw_value": b'{"user_id": "u000042", broken'},
            {"kafka_key": b"u0000421", "raw_value": b'{"user_id": "u0000421"}'},
            {"kafka_key": None, "raw_value": None},
        ],
        schema=DEAD_LETTER_SCHEMA.select("kafka_key", "raw_value").as_arrow(),
    )
    _, match = dead_letter_match("u000042")
    assert match(rows).to_pylist() == [True, True, False, False]


def test_an_empty_user_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="user's id"):
        erase_user(get_settings(), "  ")


def test_the_command_asks_first_and_does_nothing_when_declined() -> None:
    result = CliRunner().invoke(app, ["erase-user", "u000042"], input="n\n")
    assert result.exit_code == 1
    assert "cannot be undone" in result.output
    assert not get_settings().home.joinpath("catalog.db").exists()
