"""Pagination cursors: opaque to clients, signed so that a changed or forged one is refused.

A cursor carries what the next page needs to continue the same query: the metric, its filters, the
caller's row scope, the build the first page was read from (so later pages read that same build even
after a new one is published) and the key of the last row returned. It is URL-safe base64 of that
JSON plus an HMAC-SHA256 over it with the API's secret: a client can neither read it as an interface
nor edit it to reach rows its own query would not return.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from analytics_platform.exceptions import InvalidRequestError

VERSION = 1
SECRET_BYTES = 32


@dataclass(frozen=True)
class Cursor:
    metric: str
    filters: dict[str, Any]  # as given (JSON values): the next page must ask for the same
    scope: list[str] | None  # the caller's countries when the cursor was made (None: unrestricted)
    build: str  # the build id the first page was read from
    after: list[Any]  # the last row's key


def load_secret(path: Path) -> bytes:
    """The signing secret, created (random, readable by the owner only) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fresh.write_text(secrets.token_hex(SECRET_BYTES))
        fresh.chmod(0o600)
        fresh.replace(path)
    return bytes.fromhex(path.read_text().strip())


def encode(cursor: Cursor, secret: bytes) -> str:
    body = json.dumps(
        {
            "v": VERSION,
            "m": cursor.metric,
            "f": cursor.filters,
            "s": cursor.scope,
            "b": cursor.build,
            "k": [_tagged(value) for value in cursor.after],
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return f"{_b64(body)}.{_b64(_sign(body, secret))}"


def decode(token: str, secret: bytes) -> Cursor:
    """The cursor ``token`` encodes; raises InvalidRequestError if it is malformed, altered or forged."""
    invalid = InvalidRequestError(
        "cursor is malformed or was altered: pass the next_cursor of the previous page unchanged, "
        "or leave it out to start from the first page"
    )
    body_part, _, signature_part = token.partition(".")
    try:
        body, signature = _unb64(body_part), _unb64(signature_part)
    except (binascii.Error, ValueError):
        raise invalid from None
    if not hmac.compare_digest(signature, _sign(body, secret)):
        raise invalid
    data = json.loads(body)
    if data.get("v") != VERSION:
        raise InvalidRequestError("cursor was made by another version of the API; start again without it")
    return Cursor(data["m"], data["f"], data["s"], data["b"], [_untagged(value) for value in data["k"]])


def _sign(body: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tagged(value: Any) -> Any:
    """Key values keep their type through JSON: dates and timestamps are compared as such, not as text."""
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    return value


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if "t" in value:
            return datetime.fromisoformat(value["t"])
        return date.fromisoformat(value["d"])
    return value
