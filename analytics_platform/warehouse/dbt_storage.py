"""The dbt-duckdb plugin of the ``platform`` target: lets dbt's DuckDB read an ``s3://`` warehouse.

The ``raw`` views of a build call ``iceberg_scan`` on the tables' metadata files; on object storage, DuckDB
needs httpfs and an S3 secret to follow them, and a temporary secret lives only as long as the connection.
So dbt-duckdb calls :meth:`Plugin.configure_connection` on every connection it opens, which creates it from
the ``PLATFORM_S3_*`` settings dbt inherited from the run's environment (nothing for a local warehouse, or
for ``dbt parse``, which opens no platform).
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from analytics_platform.lakehouse.storage import uses_object_storage
from analytics_platform.settings import Settings, get_settings
from analytics_platform.warehouse.connections import configure_object_storage, extension_directory


class Plugin(BasePlugin):
    """Creates the warehouse's S3 secret on each dbt connection; settings from the ``PLATFORM_*`` environment."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.settings: Settings = get_settings()

    def update_connection_config(self, creds: DuckDBCredentials, config: dict[str, Any]) -> None:
        """The profile's ``settings`` reach DuckDB only per cursor, after :meth:`configure_connection` loads
        httpfs: so the extension directory goes into the connection's own configuration."""
        if uses_object_storage(self.settings):
            config["extension_directory"] = str(extension_directory(self.settings))

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        configure_object_storage(conn, self.settings)
