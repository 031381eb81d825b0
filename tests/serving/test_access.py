"""API keys: stored hashed, created, revoked, and refused with a message that says what to do."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from analytics_platform.exceptions import AccessDeniedError, ConfigError
from analytics_platform.serving import cursors
from analytics_platform.serving.access import KeyStore, Role, hash_key

pytestmark = pytest.mark.fast


def test_a_key_is_stored_only_as_its_hash_and_authenticates_with_its_role_and_countries(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.yaml")
    key = store.create("eu-dashboards", Role.viewer, ["fr", " de", "DE"])
    text = (tmp_path / "keys.yaml").read_text()
    assert key not in text and hash_key(key) in text
    assert (tmp_path / "keys.yaml").stat().st_mode & 0o777 == 0o600
    found = store.authenticate(key)
    assert (found.name, found.role, found.countries) == ("eu-dashboards", Role.viewer, frozenset({"DE", "FR"}))
    with pytest.raises(AccessDeniedError, match="needs role analyst") as denied:
        found.require(Role.analyst, "drilling down to raw events")
    assert denied.value.authenticated


def test_revoked_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.yaml")
    key = store.create("ci", Role.operator, None)
    assert store.revoke("ci") and not store.revoke("ci")
    with pytest.raises(AccessDeniedError, match="unknown or revoked"):
        store.authenticate(key)
    with pytest.raises(AccessDeniedError, match="Authorization: Bearer"):
        store.authenticate(None)


@pytest.mark.parametrize("countries", [["Germany"], ["D1"], []])
def test_country_limits_must_be_iso_codes(tmp_path: Path, countries: list[str]) -> None:
    with pytest.raises(ConfigError, match="ISO 3166-1 alpha-2"):
        KeyStore(tmp_path / "keys.yaml").create("x", Role.viewer, countries)


def test_a_hand_edited_keys_file_with_an_unknown_role_names_the_roles(tmp_path: Path) -> None:
    (tmp_path / "keys.yaml").write_text("keys:\n  - {name: x, role: admin, sha256: abc}\n")
    with pytest.raises(ConfigError, match="roles: viewer, analyst, operator"):
        KeyStore(tmp_path / "keys.yaml").authenticate("anything")


def decoded(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


def test_a_cursor_round_trips_and_any_change_to_it_is_detected(tmp_path: Path) -> None:
    secret = cursors.load_secret(tmp_path / "secret")
    assert cursors.load_secret(tmp_path / "secret") == secret
    cursor = cursors.Cursor(
        "m",
        {"start": "2026-11-01T00:00:00Z"},
        ["DE"],
        "b1",
        [date(2026, 11, 2), datetime(2026, 11, 2, 10, tzinfo=UTC), "x", 3],
    )
    token = cursors.encode(cursor, secret)
    assert cursors.decode(token, secret) == cursor
    for position in range(len(token)):
        if token[position] == ".":
            continue
        changed = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        if decoded(changed) == decoded(token):
            continue  # the unused low bits of a final base64 character
        with pytest.raises(Exception, match="malformed or was altered"):
            cursors.decode(changed, secret)
    with pytest.raises(Exception, match="malformed or was altered"):
        cursors.decode(token, b"another secret")
