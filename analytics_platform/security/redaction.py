"""The one place that decides what of a URL may be shown: a password never is.

Settings hold secrets inside URLs (``PLATFORM_CATALOG_URI``, ``PLATFORM_DAGSTER_STORAGE_URL``, a Schema
Registry URL with basic auth, a webhook whose path is its token). Everything the platform prints, logs or
puts into an error message goes through :func:`redact` or :func:`url_origin` first, since an error
message ends up in a Dagster run's event log, which anyone with the UI can read.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"

# scheme://user:password@host: the password runs to the last "@" before the path, so an unencoded "@" in
# it is masked too. A URL without a password (scheme://user@host) is left as it is.
_CREDENTIALS = re.compile(r"(?P<start>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@]*:)[^\s/?#]*@")
# libpq's key=value form (host=db user=writer password=s3cret), which psycopg2's errors may quote.
_PASSWORD_KEYWORD = re.compile(r"(?P<start>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'][^\s]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every password in it replaced by ``***``: that of each URL, and each libpq
    ``password=...``; for a URL, or a message quoting one.

    >>> redact("postgresql+psycopg2://writer:s3cret@db:5432/iceberg")
    'postgresql+psycopg2://writer:***@db:5432/iceberg'
    """
    text = _CREDENTIALS.sub(lambda match: f"{match['start']}{MASK}@", text)
    return _PASSWORD_KEYWORD.sub(lambda match: f"{match['start']}{MASK}", text)


def url_origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: no credentials, no path, no query (an incoming webhook's path, or a
    presigned URL's query, is its secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"
