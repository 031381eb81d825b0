"""The Iceberg side of ingestion: the SQL catalog and the raw tables' schemas.

Raw tables are partitioned by day of event time (dead letters by day of ingest time) and refuse
pyiceberg's silent commit retries: a retried append would rebase onto a concurrent writer's snapshot
and land the same micro-batch twice, so a stale writer must fail instead.
"""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog
from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    BinaryType,
    DecimalType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from analytics_platform.events import EVENT_TYPES, EventType, FieldKind
from analytics_platform.settings import Settings

DEAD_LETTER_TABLE = "dead_letter"
TABLE_PROPERTIES = {"write.parquet.compression-codec": "zstd"}
# Raw tables carry Kafka offsets, so a stale writer must fail rather than be rebased and append twice.
# The dead-letter table is shared by all topics and deduplicated by batch id, so it keeps retrying.
RAW_TABLE_PROPERTIES = TABLE_PROPERTIES | {"commit.retry.num-retries": "0"}

_ICEBERG_TYPES: dict[FieldKind, IcebergType] = {
    "string": StringType(),
    "int": IntegerType(),
    "money": DecimalType(12, 2),
}


CATALOG_NAME = "analytics_platform"


def load_catalog(settings: Settings) -> Catalog:
    """The Iceberg SQL catalog (SQLite by default, PostgreSQL via PLATFORM_CATALOG_URI).

    Further catalog properties come from pyiceberg's own environment variables, e.g.
    ``PYICEBERG_CATALOG__ANALYTICS_PLATFORM__S3__ENDPOINT`` for an ``s3://`` warehouse.
    """
    if settings.catalog_sql_uri.startswith("sqlite:"):
        settings.home.mkdir(parents=True, exist_ok=True)
    if settings.warehouse_uri.startswith("file://"):
        Path(settings.warehouse_uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    return pyiceberg_load_catalog(
        CATALOG_NAME, type="sql", uri=settings.catalog_sql_uri, warehouse=settings.warehouse_uri
    )


def raw_table_schema(event_type: EventType) -> Schema:
    payload = StructType(
        *(
            NestedField(100 + index, field.name, _ICEBERG_TYPES[field.kind], required=False)
            for index, field in enumerate(event_type.fields)
        )
    )
    return Schema(
        NestedField(1, "event_id", StringType(), required=True),
        NestedField(2, "event_type", StringType(), required=True),
        NestedField(3, "event_at", TimestamptzType(), required=True),
        NestedField(4, "source", StringType(), required=True),
        NestedField(5, "user_id", StringType(), required=True),
        NestedField(6, "session_id", StringType(), required=True),
        NestedField(7, "correlation_id", StringType(), required=True),
        NestedField(8, "schema_version", IntegerType(), required=True),
        NestedField(9, "payload", payload, required=True),
        NestedField(10, "ingested_at", TimestamptzType(), required=True),
        NestedField(11, "kafka_topic", StringType(), required=True),
        NestedField(12, "kafka_partition", IntegerType(), required=True),
        NestedField(13, "kafka_offset", LongType(), required=True),
    )


DEAD_LETTER_SCHEMA = Schema(
    NestedField(1, "kafka_topic", StringType(), required=True),
    NestedField(2, "kafka_partition", IntegerType(), required=True),
    NestedField(3, "kafka_offset", LongType(), required=True),
    NestedField(4, "kafka_key", BinaryType(), required=False),
    NestedField(5, "raw_value", BinaryType(), required=False),
    NestedField(6, "error", StringType(), required=True),
    NestedField(7, "ingested_at", TimestamptzType(), required=True),
)


def _day_spec(schema: Schema, column: str) -> PartitionSpec:
    source_id = schema.find_field(column).field_id
    return PartitionSpec(
        PartitionField(
            source_id=source_id,
            field_id=1000,
            transform=DayTransform(),
            name=f"{column.removesuffix('_at')}_day",
        )
    )


def table_identifier(settings: Settings, name: str) -> str:
    return f"{settings.raw_namespace}.{name}"


def raw_table(catalog: Catalog, settings: Settings, event_type: EventType) -> Table:
    """``raw.<event_type>``, created on first use."""
    schema = raw_table_schema(event_type)
    return _load_or_create(
        catalog,
        table_identifier(settings, event_type.name),
        schema,
        _day_spec(schema, "event_at"),
        RAW_TABLE_PROPERTIES,
    )


def dead_letter_table(catalog: Catalog, settings: Settings) -> Table:
    """``raw.dead_letter``: every message that could not be landed, with its bytes and the reason."""
    return _load_or_create(
        catalog,
        table_identifier(settings, DEAD_LETTER_TABLE),
        DEAD_LETTER_SCHEMA,
        _day_spec(DEAD_LETTER_SCHEMA, "ingested_at"),
        TABLE_PROPERTIES,
    )


def _load_or_create(
    catalog: Catalog, identifier: str, schema: Schema, spec: PartitionSpec, properties: dict[str, str]
) -> Table:
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        catalog.create_namespace_if_not_exists(identifier.split(".")[0])
        return catalog.create_table_if_not_exists(identifier, schema=schema, partition_spec=spec, properties=properties)


def ensure_tables(catalog: Catalog, settings: Settings) -> None:
    """Create every raw table and the dead-letter table (so dbt sources exist before any data)."""
    for event_type in EVENT_TYPES.values():
        raw_table(catalog, settings, event_type)
    dead_letter_table(catalog, settings)
