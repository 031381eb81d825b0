"""Dagster's read access to the published marts: dagster-duckdb's ``DuckDBResource``, read-only.

After a build publishes, its steps observe each mart they built as readers now see it (rows in the
published file), so every mart's page in the Dagster UI plots what the API and BI tools are served,
build after build.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from analytics_platform.exceptions import NotPublishedError
from analytics_platform.settings import get_settings
from analytics_platform.warehouse.connections import current_build, duckdb_config

MARTS_SCHEMA = "marts"


@dataclass(frozen=True)
class Published:
    build_id: str  # the build's folder under <duckdb dir>/builds
    connection: duckdb.DuckDBPyConnection
    path: Path


class PublishedMartsResource(dg.ConfigurableResource):
    """Read-only connections to the build published when a connection opens.

    A ``DuckDBResource`` per connection: the published file changes with every build (an atomic swap),
    so its path is resolved from the settings at use time, and DuckDBResource's retries ride out a
    file lock held for a moment. ``access_mode`` keeps every reader read-only, beside the API's."""

    @contextlib.contextmanager
    def published(self) -> Iterator[Published]:
        settings = get_settings()
        build = current_build(settings)
        if build is None:
            raise NotPublishedError(f"no marts are published yet in {settings.duckdb_path}")
        config = {**duckdb_config(settings), "access_mode": "READ_ONLY"}
        with DuckDBResource(database=str(build), connection_config=config).get_connection() as connection:
            yield Published(build.parent.name, connection, build)


def observe_published(context: dg.AssetExecutionContext, marts: PublishedMartsResource) -> None:
    """Log, for each mart this step built, its rows in the published build (an asset observation)."""
    built = {key.path[-1] for key in context.selected_asset_keys if key.path[0] == MARTS_SCHEMA}
    if not built:
        return
    with marts.published() as published:
        con = published.connection
        tables = con.execute("select table_name from duckdb_tables() where schema_name = ?", [MARTS_SCHEMA]).fetchall()
        counts = {
            name: con.execute(f'select count(*) from {MARTS_SCHEMA}."{name}"').fetchone()
            for (name,) in tables
            if name in built
        }
    for name, row in sorted(counts.items()):
        context.log_event(
            dg.AssetObservation(
                dg.AssetKey([MARTS_SCHEMA, name]),
                metadata={"published_rows": int(row[0]) if row else 0, "build": published.build_id},
            )
        )
