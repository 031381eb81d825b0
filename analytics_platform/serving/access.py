"""API keys, roles and row scopes: who may call what, and which rows they see.

Keys live in a YAML file (``PLATFORM_API_KEYS_FILE``, default ``<home>/api-keys.yaml``) as SHA-256
hashes: the file can be read by operators and kept in configuration management without exposing a
key. A key is 32 random bytes, so a plain hash is as strong as a slow one (there is nothing to guess).
``analytics-platform api-key create`` prints a new key once and stores its hash. The file is re-read
when it changes, so new and revoked keys take effect without a restart.

Roles are ordered: ``viewer`` reads aggregated metrics, ``analyst`` also drills down to raw events,
``operator`` also launches replays. A key may be limited to some countries (row-level security): the
one place that turns a key into a row filter is :meth:`ApiKey.scope`, which every path uses.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import yaml

from analytics_platform.exceptions import AccessDeniedError, ConfigError
from analytics_platform.serving.metrics import Scope

KEY_PREFIX = "apk_"
KEYS_FILE = "api-keys.yaml"


class Role(IntEnum):
    viewer = 1
    analyst = 2
    operator = 3


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    countries: frozenset[str] | None  # None: every country

    @property
    def scope(self) -> Scope:
        return Scope(self.countries)

    def require(self, role: Role, doing: str) -> None:
        if self.role < role:
            raise AccessDeniedError(
                f"API key {self.name!r} has role {self.role.name}; {doing} needs role {role.name} or above "
                f"(ask an operator for a key with it: `analytics-platform api-key create NAME --role {role.name}`)",
                authenticated=True,
            )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normalise_countries(countries: list[str] | None) -> list[str] | None:
    if countries is None:
        return None
    codes = sorted({country.strip().upper() for country in countries if country.strip()})
    bad = [code for code in codes if len(code) != 2 or not code.isalpha()]
    if bad or not codes:
        raise ConfigError(f"countries must be ISO 3166-1 alpha-2 codes such as DE or FR, got {countries!r}")
    return codes


class KeyStore:
    """The keys of a keys file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    def authenticate(self, key: str | None) -> ApiKey:
        if not key:
            raise AccessDeniedError(
                "no API key: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>` "
                "(create one with `analytics-platform api-key create NAME --role viewer`)",
                authenticated=False,
            )
        found = self._current().get(hash_key(key))
        if found is None:
            raise AccessDeniedError(
                f"unknown or revoked API key (keys are in {self.path}; `analytics-platform api-key list` shows them)",
                authenticated=False,
            )
        return found

    def create(self, name: str, role: Role, countries: list[str] | None) -> str:
        """Add a key named ``name`` and return it (only its hash is stored)."""
        entries = self._entries()
        if any(entry["name"] == name for entry in entries):
            raise ConfigError(
                f"an API key named {name!r} exists already in {self.path}; revoke it first or pick another name"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        entry: dict[str, object] = {"name": name, "role": role.name, "sha256": hash_key(key)}
        if (codes := normalise_countries(countries)) is not None:
            entry["countries"] = codes
        self._write([*entries, entry])
        return key

    def revoke(self, name: str) -> bool:
        entries = self._entries()
        kept = [entry for entry in entries if entry["name"] != name]
        if len(kept) != len(entries):
            self._write(kept)
        return len(kept) != len(entries)

    def all(self) -> list[ApiKey]:
        return sorted(self._current().values(), key=lambda key: key.name)

    def _current(self) -> dict[str, ApiKey]:
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._keys = {entry["sha256"]: self._key(entry) for entry in (self._entries() if stamp else [])}
                self._stamp = stamp
            return self._keys

    def _key(self, entry: dict) -> ApiKey:
        countries = normalise_countries(entry.get("countries"))
        return ApiKey(entry["name"], self._role(entry), frozenset(countries) if countries is not None else None)

    def _role(self, entry: dict) -> Role:
        try:
            return Role[entry["role"]]
        except KeyError:
            raise ConfigError(
                f"API key {entry.get('name')!r} in {self.path} has role {entry.get('role')!r}; "
                f"roles: {', '.join(role.name for role in Role)}"
            ) from None

    def _entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        document = yaml.safe_load(self.path.read_text()) or {}
        entries = document.get("keys", []) if isinstance(document, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and {"name", "role", "sha256"} <= e.keys() for e in entries
        ):
            raise ConfigError(f"{self.path} must hold `keys:`, a list of entries with name, role and sha256")
        return entries

    def _write(self, entries: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fresh.write_text(
            "# API keys of the serving API (SHA-256 of each key); edit with `analytics-platform api-key`.\n"
            + yaml.safe_dump({"keys": entries}, sort_keys=False)
        )
        fresh.chmod(0o600)
        os.replace(fresh, self.path)
