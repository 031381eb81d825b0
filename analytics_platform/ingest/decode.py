"""Bulk decoding of a micro-batch into the raw table's Arrow schema, splitting off dead letters.

The fast path parses the whole batch in one call (Arrow's JSON reader with the contract's explicit
schema, so no field is guessed or dropped; unlike polars' NDJSON reader it refuses a number or an
object where the schema says string instead of coercing it). Only when that parse fails, because some message is not a
JSON object of the right types, does the slow path validate message by message with msgspec to find
the culprits; the good messages then take the fast path again. Parsed rows then pass the batch gate
(:mod:`analytics_platform.ingest.gate`). Every message ends up either in ``rows`` or in
``dead_letters`` with its failed checks and a reason; nothing is dropped and nothing raises on bad data.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.json as pa_json

from analytics_platform.contracts.envelope import ENVELOPE
from analytics_platform.contracts.registry import Contract
from analytics_platform.contracts.types import KINDS
from analytics_platform.contracts.validation import storage_struct
from analytics_platform.ingest.gate import GateContext, gate
from analytics_platform.kafka.reader import RawMessages
from analytics_platform.lakehouse.tables import DEAD_LETTER_SCHEMA

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
DRIFT_SAMPLE = 1_000
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_MISSING = re.compile(r"Object missing required field `(\w+)`(?: - at `\$\.?([\w.]*)`)?")
_AT = re.compile(r" - at `\$\.?([\w.\[\]0-9]*)`")


@dataclass(frozen=True)
class DecodedBatch:
    rows: pa.Table
    dead_letters: pa.Table
    unknown_fields: list[str] = field(default_factory=list)
    """Fields seen in a sample of the batch that no schema version declares (schema drift)."""
    keys_not_user_id: int = 0
    """Landed rows whose Kafka key is not their user_id (a producer's choice: counted, never rejected)."""


@dataclass
class _Rejections:
    checks: dict[int, list[str]] = field(default_factory=dict)
    reasons: dict[int, list[str]] = field(default_factory=dict)

    def add(self, index: int, check: str, reason: str) -> None:
        self.checks.setdefault(index, []).append(check)
        self.reasons.setdefault(index, []).append(reason)


def _json_schema(contract: Contract) -> pa.Schema:
    envelope = {name: pa.string() for name in ENVELOPE} | {"schema_version": pa.int64()}
    payload = pa.struct([(f.name, KINDS[f.kind].arrow) for f in contract.storage_fields])
    return pa.schema([(name, payload if name == "payload" else arrow_type) for name, arrow_type in envelope.items()])


def _parse(values: list[bytes], contract: Contract) -> pl.DataFrame | None:
    """One vectorised parse of the batch, or None if any message breaks it."""
    if any(b"\n" in value for value in values):
        return None
    options = pa_json.ParseOptions(explicit_schema=_json_schema(contract), unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(
            io.BytesIO(b"\n".join(values)), parse_options=options, read_options=pa_json.ReadOptions(block_size=1 << 24)
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(values):
        return None
    return pl.DataFrame(table)


def _decode_error(error: Exception) -> tuple[str, str]:
    """(check name, reason) for a message msgspec could not decode into the contract's shape."""
    text = str(error)
    if isinstance(error, UnicodeDecodeError):
        return "message:utf8", f"not valid UTF-8: {error}"
    if not isinstance(error, msgspec.ValidationError):  # a ValidationError is a DecodeError too
        return "message:json", f"not a JSON document: {text}"
    if match := _MISSING.search(text):
        path = ".".join(part for part in (match.group(2), match.group(1)) if part)
        return f"{path}:required", f"missing required field {path}"
    at = _AT.search(text)
    path = at.group(1) if at and at.group(1) else "(event)"
    return f"{path}:type", f"wrong type at {path}: {text}"


def _flatten(frame: pl.DataFrame, contract: Contract, messages: RawMessages, parseable: list[int]) -> pl.DataFrame:
    """The gate's view: envelope columns, parsed event time, ``payload.<field>`` columns and the message key."""
    keys = [messages.keys[i] for i in parseable]
    return frame.with_columns(
        event_at=pl.col("timestamp").str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", time_unit="us", strict=False),
        kafka_key=pl.Series([k.decode("utf-8", "replace") if k is not None else None for k in keys], dtype=pl.String),
        **{f"payload.{f.name}": pl.col("payload").struct.field(f.name) for f in contract.storage_fields},
    )


def _to_rows(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    payload_fields = []
    for f in contract.storage_fields:
        column = pl.col(f"payload.{f.name}")
        if f.kind == "decimal":
            column = column.round(f.scale).cast(pl.Decimal(f.precision, f.scale), strict=False)
        elif f.kind == "int":
            column = column.cast(pl.Int32, strict=False)
        payload_fields.append(column.alias(f.name))
    # Out-of-range values become null here only in rows the gate already rejected.
    return frame.with_columns(
        schema_version=pl.col("schema_version").cast(pl.Int32, strict=False), payload=pl.struct(payload_fields)
    )


def _unknown_fields(values: list[bytes], contract: Contract) -> list[str]:
    """Fields a sample of the messages carries that no version declares (schema drift shows in every message
    of the producer that drifted, so an evenly spaced sample finds it without a second full parse)."""
    step = max(1, len(values) // DRIFT_SAMPLE)
    known_payload = {f.name for f in contract.storage_fields}
    seen: set[str] = set()
    for value in values[::step]:
        try:
            event = msgspec.json.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            continue  # such a message is a dead letter already; it tells nothing about drift
        if not isinstance(event, dict):
            continue
        seen.update(name for name in event if name not in ENVELOPE)
        if isinstance(event.get("payload"), dict):
            seen.update(f"payload.{name}" for name in event["payload"] if name not in known_payload)
    return sorted(seen)


def decode_batch(
    contract: Contract,
    messages: RawMessages,
    ingested_at: datetime,
    target: pa.Schema,
    context: GateContext,
    *,
    max_event_bytes: int,
) -> DecodedBatch:
    """Split a batch into typed raw rows and dead letters (bytes kept, failed checks and reason given).

    ``target`` is the raw table's current Arrow schema (``table.schema().as_arrow()``): its field ids,
    not the contract's, decide how Iceberg maps the columns.
    """
    rejected = _Rejections()
    values = messages.values
    # The usual batch has no empty or oversized message: two C-speed passes instead of a Python loop.
    if all(values) and max(map(len, cast("list[bytes]", values)), default=0) <= max_event_bytes:
        parseable = list(range(len(values)))
        candidates = cast("list[bytes]", values)
    else:
        parseable = _sized(values, max_event_bytes, rejected)
        candidates = [values[index] or b"" for index in parseable]
    frame = _parse(candidates, contract)
    if frame is None:
        # Slow path: find the messages that break the batch, normalise the rest to compact JSON.
        struct = storage_struct(contract)
        kept, normalised = [], []
        for index, value in zip(parseable, candidates, strict=True):
            try:
                normalised.append(_ENCODER.encode(msgspec.json.decode(value, type=struct)))
                kept.append(index)
            except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as error:
                rejected.add(index, *_decode_error(error))
        parseable = kept
        frame = _parse(normalised, contract) if normalised else pl.DataFrame(_json_schema(contract).empty_table())
        if frame is None:
            raise RuntimeError(
                "messages that passed per-message validation failed the bulk parse; "
                "the polars schema and the msgspec contract disagree"
            )
    flat = _flatten(frame, contract, messages, parseable)
    failures = gate(flat, contract, context)
    for row, checks in failures.checks.items():
        for check, reason in zip(checks, failures.reasons[row], strict=True):
            rejected.add(parseable[row], check, reason)
    failed_rows = sorted(failures.checks)
    everything = len(parseable) == len(values)  # the slow path may have rejected some
    partitions = messages.partitions if everything else [messages.partitions[i] for i in parseable]
    offsets = messages.offsets if everything else [messages.offsets[i] for i in parseable]
    good = (
        _to_rows(flat, contract)
        .with_columns(
            kafka_partition=pl.Series(partitions, dtype=pl.Int32),
            kafka_offset=pl.Series(offsets, dtype=pl.Int64),
            ingested_at=pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
            kafka_topic=pl.lit(messages.topic),
        )
        .filter(~pl.int_range(pl.len()).is_in(failed_rows))
    )
    rows = good.select(target.names).to_arrow().cast(target)
    return DecodedBatch(
        rows=rows,
        dead_letters=dead_letter_rows(
            messages, rejected, ingested_at, versions=_declared_versions(flat, parseable) if rejected.checks else {}
        ),
        unknown_fields=_unknown_fields(candidates, contract),
        keys_not_user_id=good.filter(~pl.col("kafka_key").eq_missing(pl.col("user_id"))).height,
    )


def _sized(values: list[bytes | None], max_event_bytes: int, rejected: _Rejections) -> list[int]:
    """Indexes of the messages that are neither empty nor too large; the others are rejected."""
    parseable = []
    for index, value in enumerate(values):
        if not value:
            rejected.add(index, "message:empty", "empty message (null or zero-length value)")
        elif len(value) > max_event_bytes:
            rejected.add(
                index,
                "message:size",
                f"message is {len(value):,} bytes; events may be at most {max_event_bytes:,} "
                "(PLATFORM_MAX_EVENT_BYTES)",
            )
        else:
            parseable.append(index)
    return parseable


def _declared_versions(flat: pl.DataFrame, parseable: list[int]) -> dict[int, int | None]:
    return dict(zip(parseable, flat["schema_version"].to_list(), strict=True))


def dead_letter_rows(
    messages: RawMessages, rejected: _Rejections, ingested_at: datetime, *, versions: dict[int, int | None]
) -> pa.Table:
    bad = sorted(rejected.checks)
    int32 = 2**31
    return pa.Table.from_pydict(
        {
            "kafka_topic": [messages.topic] * len(bad),
            "kafka_partition": [messages.partitions[i] for i in bad],
            "kafka_offset": [messages.offsets[i] for i in bad],
            "kafka_key": [messages.keys[i] for i in bad],
            "raw_value": [messages.values[i] for i in bad],
            "reason": ["; ".join(rejected.reasons[i]) for i in bad],
            "failed_checks": [rejected.checks[i] for i in bad],
            "schema_version": [v if (v := versions.get(i)) is not None and -int32 <= v < int32 else None for i in bad],
            "ingested_at": [ingested_at] * len(bad),
        },
        schema=DEAD_LETTER_SCHEMA.as_arrow(),
    )
