"""The published marts as Iceberg tables, for readers beyond DuckDB (Trino, Spark, pyiceberg).

After a marts build publishes, every table of its ``marts`` schema is written to the Iceberg table of
the same name in ``PLATFORM_MARTS_NAMESPACE`` (``marts``) of the platform's catalog, with a pyiceberg
overwrite: one snapshot per table per build, whose summary names the build (``marts.build-id``), so a
reader can tell which build it sees. (DuckDB's iceberg extension cannot write into our SQL catalog;
pyiceberg can.) A column a model gained is added to the table; one it lost stays, null from then on.
Old snapshots are expired like the raw tables'.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from analytics_platform.lakehouse.snapshots import expire_old_snapshots
from analytics_platform.lakehouse.tables import TABLE_PROPERTIES
from analytics_platform.settings import Settings

BUILD_ID_KEY = "marts.build-id"
SNAPSHOTS_KEPT = 5  # a reader that planned on an older build finds its files for a few builds more


def export_marts(settings: Settings, catalog: Catalog, build: Path) -> dict[str, int]:
    """Write every table of ``build``'s ``marts`` schema to Iceberg; returns the rows written per table."""
    namespace = settings.marts_namespace
    catalog.create_namespace_if_not_exists(namespace)
    written: dict[str, int] = {}
    with duckdb.connect(str(build), read_only=True) as con:
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'marts' order by 1"
            ).fetchall()
        ]
        for name in tables:
            rows = _iceberg_ready(con.execute(f'select * from marts."{name}"').to_arrow_table())
            identifier = f"{namespace}.{name}"
            try:
                table = catalog.load_table(identifier)
            except NoSuchTableError:
                table = catalog.create_table(identifier, schema=rows.schema, properties=TABLE_PROPERTIES)
            if set(rows.schema.names) - set(table.schema().column_names):
                with table.update_schema() as update:
                    update.union_by_name(rows.schema)
                table = catalog.load_table(identifier)
            table.overwrite(rows, snapshot_properties={BUILD_ID_KEY: build.parent.name})
            expire_old_snapshots(table, SNAPSHOTS_KEPT)
            written[name] = rows.num_rows
    return written


def _iceberg_ready(rows: pa.Table) -> pa.Table:
    """Iceberg's spelling of UTC timestamps (DuckDB says Etc/UTC)."""
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC"), f.nullable) if pa.types.is_timestamp(f.type) and f.type.tz else f
        for f in rows.schema
    ]
    return rows.cast(pa.schema(fields))
