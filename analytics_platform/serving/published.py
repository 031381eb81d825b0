"""The published marts builds the API reads, kept open so a paginated query reads one build throughout.

Builds are immutable once published (see ``warehouse/builds.py``): the live follower publishes a new
file every few seconds and deletes all but the last few. The API follows the ``warehouse.duckdb``
pointer for every new query, and keeps each build it opened for ``keep_s`` after its last use: a
cursor names its build, and an open connection keeps even a deleted file readable, so the next pages
of a query read the same rows however many builds were published meanwhile. A cursor whose build was
closed and deleted gets ``BuildGoneError`` (HTTP 409).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from analytics_platform.exceptions import BuildGoneError, NotPublishedError
from analytics_platform.settings import Settings
from analytics_platform.warehouse import builds
from analytics_platform.warehouse.connections import BUILD_FILE, duckdb_config, published_link


@dataclass(frozen=True)
class RawAsOf:
    snapshot_id: int
    newest_event_at: datetime | None


@dataclass(frozen=True)
class AsOf:
    """What an answer reflects: the build it was read from and, per raw table, the Iceberg snapshot."""

    build: str
    published_at: datetime
    raw: dict[str, RawAsOf]

    @property
    def newest_event_at(self) -> datetime | None:
        times = [raw.newest_event_at for raw in self.raw.values() if raw.newest_event_at is not None]
        return max(times) if times else None

    def freshness_seconds(self, now: datetime) -> float | None:
        """Age of the newest event the answer reflects (None before any event)."""
        newest = self.newest_event_at
        return max(0.0, (now - newest).total_seconds()) if newest is not None else None

    def as_json(self) -> dict[str, Any]:
        return {
            "build": self.build,
            "published_at": self.published_at.isoformat(),
            "raw": {
                name: {
                    "snapshot_id": raw.snapshot_id,
                    "newest_event_at": raw.newest_event_at.isoformat() if raw.newest_event_at else None,
                }
                for name, raw in sorted(self.raw.items())
            },
        }


@dataclass
class OpenBuild:
    id: str
    path: Path
    connection: duckdb.DuckDBPyConnection
    published_at: datetime
    last_used: float = field(default_factory=time.monotonic)
    _as_of: dict[str, AsOf] = field(default_factory=dict)

    def cursor(self) -> contextlib.closing[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request (a DuckDB connection is not shared between threads)."""
        return contextlib.closing(self.connection.cursor())

    def as_of(self, live: bool) -> AsOf:
        """What the build's live facts (``live``) or its other marts reflect."""
        kind = builds.LIVE_PINS if live else builds.MARTS_PINS
        if kind not in self._as_of:
            self._as_of[kind] = AsOf(self.id, self.published_at, self._read_pins(kind))
        return self._as_of[kind]

    def _read_pins(self, kind: str) -> dict[str, RawAsOf]:
        pins = f"{builds.PINS_SCHEMA}.{builds.PINS_TABLE}"
        with self.cursor() as con:
            kinds = {k for (k,) in con.execute(f"select distinct kind from {pins}").fetchall()}
            chosen = kind if kind in kinds else builds.RAW_PINS  # a build from before these kinds existed
            has_times = bool(
                con.execute(
                    "select 1 from duckdb_tables() where schema_name = ? and table_name = ?",
                    [builds.PINS_SCHEMA, builds.SNAPSHOT_TIMES_TABLE],
                ).fetchall()
            )
            times = (
                f"(select newest_event_at from {builds.PINS_SCHEMA}.{builds.SNAPSHOT_TIMES_TABLE} t "
                "where t.table_name = p.table_name and t.snapshot_id = p.snapshot_id limit 1)"
                if has_times
                else "null::timestamptz"
            )
            rows = con.execute(
                f"select table_name, snapshot_id, {times} from {pins} p where kind = ?",
                [chosen],
            ).fetchall()
        return {name: RawAsOf(int(snapshot_id), newest) for name, snapshot_id, newest in rows}


class PublishedBuilds:
    """Read-only connections to the published build and to the builds recent cursors were made on."""

    def __init__(self, settings: Settings, keep_s: float = 900.0) -> None:
        self._settings = settings
        self._link = published_link(settings)
        self._keep_s = keep_s
        self._open: dict[str, OpenBuild] = {}
        self._lock = threading.Lock()

    def current(self) -> OpenBuild:
        """The published build, opened on first use."""
        build_id, path = self._published()
        return self.opened(build_id) or self._get(build_id, path)

    def current_if_open(self) -> OpenBuild | None:
        """The published build if it is open already: no I/O but one readlink (the request fast path)."""
        return self.opened(self._published()[0])

    def opened(self, build_id: str) -> OpenBuild | None:
        with self._lock:
            build = self._open.get(build_id)
            return self._touch(build) if build is not None else None

    def pinned(self, build_id: str) -> OpenBuild:
        """The build a cursor was made on, if it is still open or still on disk."""
        path = self._settings.duckdb_path / "builds" / build_id / BUILD_FILE
        if (build := self.opened(build_id)) is not None:
            return build
        if "/" in build_id or not path.exists():
            raise BuildGoneError(
                f"the marts build this cursor reads ({build_id}) is no longer kept (a newer one was published and "
                f"the API keeps a build {self._keep_s:g} s after its last use): request the first page again"
            )
        return self._get(build_id, path)

    def _published(self) -> tuple[str, Path]:
        """The published build's id and file. One readlink (the pointer is a relative symlink that
        publish() swaps atomically), not a full path resolution: this runs for every request."""
        try:
            target = Path(os.readlink(self._link))
        except FileNotFoundError:
            raise NotPublishedError(
                f"no marts are published yet in {self._settings.duckdb_path}: run `analytics-platform build` "
                "(or wait for the first automatic build under `make dev`)"
            ) from None
        return target.parent.name, self._link.parent / target

    def close(self) -> None:
        with self._lock:
            for build in self._open.values():
                build.connection.close()
            self._open.clear()

    def _get(self, build_id: str, path: Path) -> OpenBuild:
        with self._lock:
            self._close_idle(except_for=build_id)
            if build_id not in self._open:
                try:
                    connection = duckdb.connect(str(path), read_only=True, config=duckdb_config(self._settings))
                except duckdb.IOException as error:  # deleted between resolving the pointer and opening it
                    raise BuildGoneError(f"the marts build {build_id} was replaced while opening it: retry") from error
                published_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                self._open[build_id] = OpenBuild(build_id, path, connection, published_at)
            return self._touch(self._open[build_id])

    def _touch(self, build: OpenBuild) -> OpenBuild:
        build.last_used = time.monotonic()
        return build

    def _close_idle(self, except_for: str) -> None:
        """Close builds unused for keep_s (the published one too: the next request reopens it)."""
        cutoff = time.monotonic() - self._keep_s
        for build_id, build in list(self._open.items()):
            if build.last_used < cutoff and build_id != except_for:
                build.connection.close()
                del self._open[build_id]
