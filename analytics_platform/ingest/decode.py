"""Bulk decoding of a micro-batch into the raw table's Arrow schema, splitting off dead letters.

The fast path parses the whole batch in one call (polars' NDJSON reader with the contract's explicit
schema, so no field is guessed or dropped) and checks it column-wise. Only when that parse fails,
because some message is not a JSON object of the right types, does the slow path validate message
by message with msgspec to find the culprits; the good messages then take the fast path again.
Every message ends up either in ``rows`` or in ``dead_letters``, with a reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import msgspec
import polars as pl
import pyarrow as pa

from analytics_platform.events import ENVELOPE_FIELDS, EventType, FieldKind
from analytics_platform.ingest.kafka_reader import RawMessages
from analytics_platform.ingest.lakehouse import DEAD_LETTER_SCHEMA

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"

_POLARS_TYPES: dict[FieldKind, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "money": pl.Float64(),
}
_ENCODER = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True)
class DecodedBatch:
    rows: pa.Table
    dead_letters: pa.Table


def _json_schema(event_type: EventType) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {name: pl.String() for name in ENVELOPE_FIELDS}
    schema["schema_version"] = pl.Int64()
    schema["payload"] = pl.Struct({f.name: _POLARS_TYPES[f.kind] for f in event_type.fields})
    return schema


def _parse(values: list[bytes], event_type: EventType) -> pl.DataFrame | None:
    """One vectorised parse of the batch, or None if any message breaks it."""
    if any(b"\n" in value for value in values):
        return None
    try:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(values)), schema=_json_schema(event_type))
    except pl.exceptions.PolarsError:
        return None
    return frame if frame.height == len(values) else None


def _failure_reasons(frame: pl.DataFrame, event_type: EventType) -> pl.Expr:
    """The first rule each row breaks, or null if it breaks none."""
    checks: list[tuple[pl.Expr, str]] = [
        (pl.col(name).is_null(), f"missing required field {name}") for name in ENVELOPE_FIELDS if name != "payload"
    ]
    checks.append((pl.col("payload").is_null(), "missing required field payload"))
    checks.append((pl.col("event_type") != event_type.name, f"event_type does not match topic {event_type.topic}"))
    checks.append((pl.col("event_at").is_null(), "timestamp is not ISO 8601 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)"))
    checks.extend(
        (pl.col("payload").struct.field(f.name).is_null(), f"missing required field payload.{f.name}")
        for f in event_type.fields
        if f.required
    )
    return pl.coalesce([pl.when(condition).then(pl.lit(reason)) for condition, reason in checks])


def _to_rows(frame: pl.DataFrame, event_type: EventType) -> pl.DataFrame:
    payload_fields = [
        (
            pl.col("payload").struct.field(f.name).round(2).cast(pl.Decimal(12, 2))
            if f.kind == "money"
            else pl.col("payload").struct.field(f.name).cast(pl.Int32)
            if f.kind == "int"
            else pl.col("payload").struct.field(f.name)
        ).alias(f.name)
        for f in event_type.fields
    ]
    return frame.with_columns(
        event_at=pl.col("timestamp").str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", time_unit="us", strict=False),
        schema_version=pl.col("schema_version").cast(pl.Int32, strict=False),
        payload=pl.struct(payload_fields),
    )


def decode_batch(
    event_type: EventType, messages: RawMessages, ingested_at: datetime, target: pa.Schema
) -> DecodedBatch:
    """Split a batch into typed raw rows and dead letters (bytes kept, reason given).

    ``target`` is the raw table's current Arrow schema (``table.schema().as_arrow()``): its field ids,
    not the contract's, decide how Iceberg maps the columns.
    """
    count = len(messages)
    reasons: list[str | None] = [None] * count
    values = messages.values
    parseable = [index for index, value in enumerate(values) if value]
    for index in range(count):
        if not values[index]:
            reasons[index] = "empty message (null or zero-length value)"
    candidates = [values[index] or b"" for index in parseable]
    frame = _parse(candidates, event_type)
    if frame is None:
        # Slow path: find the messages that break the batch, normalise the rest to compact JSON.
        envelope = event_type.envelope_struct
        kept, normalised = [], []
        for index, value in zip(parseable, candidates, strict=True):
            try:
                normalised.append(_ENCODER.encode(msgspec.json.decode(value, type=envelope)))
                kept.append(index)
            except (msgspec.ValidationError, msgspec.DecodeError) as error:
                reasons[index] = f"does not match the {event_type.name} contract: {error}"
            except UnicodeDecodeError as error:
                reasons[index] = f"not valid UTF-8: {error}"
        parseable = kept
        frame = _parse(normalised, event_type) if normalised else pl.DataFrame(schema=_json_schema(event_type))
        if frame is None:
            raise RuntimeError(
                "messages that passed per-message validation failed the bulk parse; "
                "the polars schema and the msgspec contract disagree"
            )
    frame = _to_rows(frame, event_type).with_columns(
        failure=_failure_reasons(frame, event_type),
        kafka_partition=pl.Series([messages.partitions[i] for i in parseable], dtype=pl.Int32),
        kafka_offset=pl.Series([messages.offsets[i] for i in parseable], dtype=pl.Int64),
        _index=pl.Series(parseable, dtype=pl.Int64),
    )
    for index, reason in frame.filter(pl.col("failure").is_not_null()).select("_index", "failure").iter_rows():
        reasons[index] = reason
    good = frame.filter(pl.col("failure").is_null()).with_columns(
        ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        kafka_topic=pl.lit(messages.topic),
    )
    rows = good.select(target.names).to_arrow().cast(target)
    bad = [index for index, reason in enumerate(reasons) if reason is not None]
    dead_letters = pa.Table.from_pydict(
        {
            "kafka_topic": [messages.topic] * len(bad),
            "kafka_partition": [messages.partitions[i] for i in bad],
            "kafka_offset": [messages.offsets[i] for i in bad],
            "kafka_key": [messages.keys[i] for i in bad],
            "raw_value": [messages.values[i] for i in bad],
            "error": [reasons[i] for i in bad],
            "ingested_at": [ingested_at] * len(bad),
        },
        schema=DEAD_LETTER_SCHEMA.as_arrow(),
    )
    return DecodedBatch(rows=rows, dead_letters=dead_letters)
