"""The raw Iceberg tables: their schemas, and opening them for reading or ensuring them for writing.

Raw tables are partitioned by day of event time (dead letters by day of ingest time) and refuse
pyiceberg's silent commit retries: a retried append would rebase onto a concurrent writer's snapshot
and land the same micro-batch twice, so a stale writer must fail instead.

Readers (checks, builds, sensors, reports) *open* a table: that never creates or evolves it, and a
table that does not exist yet is :class:`TableNotFoundError`. Writers (ingestion, replays, reset)
*ensure* it: created on first use and, when a new schema version adds a payload field, evolved in
place (a metadata-only change: old data files are not rewritten and read the column as null).
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    BinaryType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from analytics_platform.contracts.envelope import ENVELOPE_STRINGS, EventType, event_types
from analytics_platform.contracts.registry import Contract, load_registry
from analytics_platform.contracts.types import iceberg_type
from analytics_platform.exceptions import SchemaRegistryError, TableNotFoundError, TerminalError
from analytics_platform.security.redaction import redact
from analytics_platform.settings import Settings

DEAD_LETTER_TABLE = "dead_letter"
REPLAYS_TABLE = "dead_letter_replays"
LINEAGE_TABLE = "ingest_snapshots"
TABLE_PROPERTIES = {"write.parquet.compression-codec": "zstd"}
# Tables appended to every few seconds merge their manifests: a fast append adds one manifest per commit,
# and every later commit reads and rewrites the list of them, so commit time grew with every commit
# (bench/profile_commit.py). Merged, a snapshot holds at most MERGE_COUNT small manifests beside the merged
# ones, which stay below the target size, so no commit rewrites more than that.
MANIFEST_MERGE_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "50",
    "commit.manifest.target-size-bytes": str(256 * 1024),
}
# pyiceberg 0.12 deep-copies the table metadata about a dozen times per commit, and the metadata lists the
# table's previous metadata files: 100 by default, so each of a table's first 100 commits (5 minutes of a
# following run) cost more than the one before, ~35% in all (bench/profile_commit.py --previous-versions-max).
# Ten are listed; the expiry job deletes the metadata files no longer listed, after the grace period, as it
# did those past 100.
SHORT_METADATA_LOG_PROPERTIES = {"write.metadata.previous-versions-max": "10"}
APPENDED_TABLE_PROPERTIES = TABLE_PROPERTIES | MANIFEST_MERGE_PROPERTIES | SHORT_METADATA_LOG_PROPERTIES
# Raw tables carry Kafka offsets, so a stale writer must fail rather than be rebased and append twice.
# The dead-letter table is shared by all topics and deduplicated by batch id, so it keeps retrying.
RAW_TABLE_PROPERTIES = APPENDED_TABLE_PROPERTIES | {"commit.retry.num-retries": "0"}
# Column ids of the envelope in the raw tables (``timestamp`` is stored parsed, as ``event_at``).
_ENVELOPE_FIELD_IDS = {
    "event_id": 1,
    "event_type": 2,
    "timestamp": 3,
    "source": 4,
    "user_id": 5,
    "session_id": 6,
    "correlation_id": 7,
    "schema_version": 8,
    "payload": 9,
}


def contract_for(settings: Settings, event_type: EventType) -> Contract:
    """The event type's schemas from the configured registry (PLATFORM_SCHEMA_DIR).

    Raises:
        SchemaRegistryError: a version breaks its compatibility mode; nothing may be read or written
            with it, so a breaking change is refused before any data moves.
    """
    contract = load_registry(settings.schema_path).contract(event_type.name)
    if problems := contract.problems():
        raise SchemaRegistryError(
            f"the registry at {settings.schema_path} has incompatible changes; ingestion of "
            f"{event_type.topic} is refused until they are fixed:\n  " + "\n  ".join(str(p) for p in problems)
        )
    return contract


def raw_table_schema(contract: Contract) -> Schema:
    """The raw table of a contract: the envelope, the payload (optional fields, so later versions may
    omit them) and where the row came from in Kafka."""
    payload = StructType(
        *(
            NestedField(100 + index, field.name, iceberg_type(field.kind, field.precision, field.scale), required=False)
            for index, field in enumerate(contract.storage_fields)
        )
    )
    types: dict[str, IcebergType] = dict.fromkeys(ENVELOPE_STRINGS, StringType())
    types |= {"timestamp": TimestamptzType(), "schema_version": IntegerType(), "payload": payload}
    envelope = [
        NestedField(field_id, "event_at" if name == "timestamp" else name, types[name], required=True)
        for name, field_id in _ENVELOPE_FIELD_IDS.items()
    ]
    return Schema(
        *envelope,
        NestedField(10, "ingested_at", TimestamptzType(), required=True),
        NestedField(11, "kafka_topic", StringType(), required=True),
        NestedField(12, "kafka_partition", IntegerType(), required=True),
        NestedField(13, "kafka_offset", LongType(), required=True),
    )


DEAD_LETTER_SCHEMA = Schema(
    NestedField(1, "kafka_topic", StringType(), required=True, doc="Topic the message was read from."),
    NestedField(2, "kafka_partition", IntegerType(), required=True),
    NestedField(3, "kafka_offset", LongType(), required=True),
    NestedField(4, "kafka_key", BinaryType(), required=False, doc="The message key, as sent."),
    NestedField(5, "raw_value", BinaryType(), required=False, doc="The original bytes, to inspect or replay."),
    NestedField(6, "reason", StringType(), required=True, doc="Why it was rejected, for a person."),
    NestedField(
        7,
        "failed_checks",
        ListType(20, StringType(), element_required=True),
        required=True,
        doc="Machine-readable names of every check it failed, e.g. payload.price:non_negative.",
    ),
    NestedField(8, "schema_version", IntegerType(), required=False, doc="The version the event declared."),
    NestedField(9, "ingested_at", TimestamptzType(), required=True),
)

REPLAYS_SCHEMA = Schema(
    NestedField(1, "kafka_topic", StringType(), required=True),
    NestedField(2, "kafka_partition", IntegerType(), required=True),
    NestedField(3, "kafka_offset", LongType(), required=True),
    NestedField(4, "replay_id", StringType(), required=True, doc="The replay that landed it (raw snapshot property)."),
    NestedField(5, "landed_in", StringType(), required=True, doc="The raw table it landed in."),
    NestedField(6, "replayed_at", TimestamptzType(), required=True),
)


LINEAGE_SCHEMA = Schema(
    NestedField(1, "table_name", StringType(), required=True, doc="The raw table, e.g. raw.purchase."),
    NestedField(2, "snapshot_id", LongType(), required=True, doc="The snapshot that landed the rows."),
    NestedField(3, "committed_at", TimestamptzType(), required=True),
    NestedField(4, "ingested_at", TimestamptzType(), required=True, doc="The ingested_at of every row it landed."),
    NestedField(5, "run_id", StringType(), required=False, doc="The Dagster run that committed it, if any."),
    NestedField(6, "summary", StringType(), required=True, doc="The snapshot's summary properties, as JSON."),
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


def open_table(catalog: Catalog, settings: Settings, name: str) -> Table:
    """``raw.<name>`` as it is, for reading: never created or evolved here.

    Raises:
        TableNotFoundError: nothing created it yet (no ingest has run).
    """
    try:
        return catalog.load_table(table_identifier(settings, name))
    except NoSuchTableError:
        raise TableNotFoundError(
            f"the Iceberg table {table_identifier(settings, name)} does not exist yet in "
            f"{redact(settings.catalog_sql_uri)}: "
            "nothing was ingested into it. Run `analytics-platform ingest` (or let the ingest sensors run), or "
            "check PLATFORM_CATALOG_URI and PLATFORM_HOME point at the platform you mean."
        ) from None


def read_dead_letters(
    catalog: Catalog,
    settings: Settings,
    name: str = DEAD_LETTER_TABLE,
    *,
    row_filter: str = "true",
    selected_fields: tuple[str, ...] = ("*",),
) -> pa.Table:
    """Rows of ``raw.dead_letter`` (or ``raw.dead_letter_replays``), none if it was never created."""
    try:
        return (
            open_table(catalog, settings, name).scan(row_filter=row_filter, selected_fields=selected_fields).to_arrow()
        )
    except TableNotFoundError:
        schema = DEAD_LETTER_SCHEMA if name == DEAD_LETTER_TABLE else REPLAYS_SCHEMA
        if selected_fields != ("*",):
            schema = schema.select(*selected_fields)
        return schema.as_arrow().empty_table()


def open_raw_table(catalog: Catalog, settings: Settings, event_type: EventType) -> Table | None:
    """``raw.<event_type>`` for reading, or None if it was never created (nothing landed yet)."""
    try:
        return open_table(catalog, settings, event_type.name)
    except TableNotFoundError:
        return None


def ensure_raw_table(catalog: Catalog, settings: Settings, event_type: EventType) -> Table:
    """``raw.<event_type>`` for writing: created on first use, evolved when the registry has new payload fields."""
    schema = raw_table_schema(contract_for(settings, event_type))
    table = _load_or_create(
        catalog,
        table_identifier(settings, event_type.name),
        schema,
        _day_spec(schema, "event_at"),
        RAW_TABLE_PROPERTIES,
    )
    current, wanted = _payload_types(table.schema()), _payload_types(schema)
    if any(current.get(name) != field_type for name, field_type in wanted.items()):
        _evolve(table, schema)
    return table


def _payload_types(schema: Schema) -> dict[str, IcebergType]:
    payload = schema.find_field("payload").field_type
    assert isinstance(payload, StructType)
    return {field.name: field.field_type for field in payload.fields}


def _evolve(table: Table, schema: Schema) -> None:
    """Add the registry's new payload fields (and promote types) in place; old files are not rewritten.

    Columns of fields a later version removed stay: old rows hold data, and union_by_name never drops.
    """
    try:
        with table.update_schema() as update:
            update.union_by_name(schema)
    except ValueError as error:
        raise TerminalError(
            f"{table.name()} cannot evolve to the registry's schema ({error}); "
            "run `analytics-platform schemas check` to find the incompatible field"
        ) from error


def ensure_dead_letter_table(catalog: Catalog, settings: Settings) -> Table:
    """``raw.dead_letter``: every message that could not be landed, with its bytes and the reason."""
    return _load_or_create(
        catalog,
        table_identifier(settings, DEAD_LETTER_TABLE),
        DEAD_LETTER_SCHEMA,
        _day_spec(DEAD_LETTER_SCHEMA, "ingested_at"),
        APPENDED_TABLE_PROPERTIES,
    )


def ensure_replays_table(catalog: Catalog, settings: Settings) -> Table:
    """``raw.dead_letter_replays``: which dead letters a replay landed (append-only, so never rewritten)."""
    return _load_or_create(
        catalog,
        table_identifier(settings, REPLAYS_TABLE),
        REPLAYS_SCHEMA,
        _day_spec(REPLAYS_SCHEMA, "replayed_at"),
        APPENDED_TABLE_PROPERTIES,
    )


def _load_or_create(
    catalog: Catalog, identifier: str, schema: Schema, spec: PartitionSpec, properties: dict[str, str]
) -> Table:
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        catalog.create_namespace_if_not_exists(identifier.split(".")[0])
        return catalog.create_table_if_not_exists(identifier, schema=schema, partition_spec=spec, properties=properties)
    return _with_properties(table, properties)


def _with_properties(table: Table, properties: dict[str, str]) -> Table:
    """``table`` with ``properties`` set: a table created by an older release gets the ones added since.

    A metadata-only commit, made once; if another writer committed meanwhile, the table is reloaded and
    the properties set on it (another process ensuring the same table may have set them already)."""
    for _ in range(5):
        missing = {key: value for key, value in properties.items() if table.properties.get(key) != value}
        if not missing:
            return table
        try:
            with table.transaction() as transaction:
                transaction.set_properties(missing)
        except CommitFailedException:
            table.refresh()
    return table


def ensure_lineage_table(catalog: Catalog, settings: Settings) -> Table:
    """``raw.ingest_snapshots``: the summary of every raw snapshot that landed rows, kept past its expiry
    (see :mod:`analytics_platform.lakehouse.lineage`)."""
    return _load_or_create(
        catalog,
        table_identifier(settings, LINEAGE_TABLE),
        LINEAGE_SCHEMA,
        _day_spec(LINEAGE_SCHEMA, "ingested_at"),
        APPENDED_TABLE_PROPERTIES,
    )


def ensure_tables(catalog: Catalog, settings: Settings) -> None:
    """Create every raw table and the dead-letter tables (so dbt sources exist before any data)."""
    for event_type in event_types().values():
        ensure_raw_table(catalog, settings, event_type)
    ensure_dead_letter_table(catalog, settings)
    ensure_replays_table(catalog, settings)
    ensure_lineage_table(catalog, settings)
