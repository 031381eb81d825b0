"""What every route depends on: the app's state (settings, builds, keys, Dagster...) and the caller's key."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Annotated, Any

import cachetools
import duckdb
from dagster import DagsterInstance
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from analytics_platform.serving.access import ApiKey, KeyStore
from analytics_platform.serving.published import PublishedBuilds
from analytics_platform.serving.replays import Launch
from analytics_platform.settings import Settings


class PageCache:
    """Metric pages of published builds (immutable), least recently used dropped past ``max_rows`` rows."""

    def __init__(self, max_rows: int = 200_000) -> None:
        self._pages: cachetools.LRUCache[Hashable, Any] = cachetools.LRUCache(
            maxsize=max_rows, getsizeof=lambda e: e[1]
        )
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._pages.get(key)
        return entry[0] if entry is not None else None

    def put(self, key: Hashable, page: Any, rows: int) -> None:
        with self._lock:
            self._pages[key] = (page, rows)


@dataclass
class Services:
    settings: Settings
    builds: PublishedBuilds
    keys: KeyStore
    cursor_secret: bytes
    lake: duckdb.DuckDBPyConnection  # reads the raw Iceberg tables: one cursor() per request
    launch_replay: Launch  # starts a replay's Dagster run (through the webserver)
    pages: PageCache = field(default_factory=PageCache)
    _instance: DagsterInstance | None = None

    def lake_cursor(self) -> contextlib.closing[duckdb.DuckDBPyConnection]:
        return contextlib.closing(self.lake.cursor())

    def instance(self) -> DagsterInstance:
        """Dagster's instance (its run storage), opened on first use: only replays need it."""
        if self._instance is None:
            from analytics_platform.local.instance import get_instance

            self._instance = get_instance(self.settings)
        return self._instance


# Both are async so that FastAPI calls them on the event loop: they only read memory (and stat the key
# file), and each sync dependency would cost a hop through the thread pool on every request.
async def services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


async def caller(
    state: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> ApiKey:
    return state.keys.authenticate(credentials.credentials if credentials else header_key)


ServicesDep = Annotated[Services, Depends(services)]
CallerDep = Annotated[ApiKey, Depends(caller)]
