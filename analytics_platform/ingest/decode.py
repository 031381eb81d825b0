"""Bulk decoding of a micro-batch into the raw table's Arrow schema, splitting off dead letters.

The fast path parses the whole batch in one call (Arrow's JSON reader with the contract's explicit
schema, so no field is guessed or dropped; unlike polars' NDJSON reader it refuses a number or an
object where the schema says string instead of coercing it). Only when that parse fails, because some message is not a
JSON object of the right types, does the slow path validate message by message with msgspec to find
the culprits; the good messages then take the fast path again. Parsed rows then pass the batch gate
(:mod:`analytics_platform.ingest.gate`). Every message ends up either in ``rows`` or in
``dead_letters`` with its failed checks and a reason; nothing is dropped and nothing raises on bad data.

Messages come from clients we do not control, so no exception one message provokes may fail its
batch: a batch that failed would fail again on every retry, and nothing behind it would ever land.
A message that makes a decoder or the gate raise is a dead letter with the check
``message:decoder_error`` and the exception in its reason; a batch-level step that raises is retried
on halves of the batch until the messages that raise alone are found (see :func:`_isolate`). A
message gets the same verdict whichever path its batch took: the fast path declines batches Arrow
would judge differently from msgspec (bytes that are not UTF-8, a byte order mark), and where msgspec
cannot judge (nesting deeper than Python's recursion limit) or is stricter (``NaN``, ``Infinity``),
Arrow, the fast path's reader, does.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar, cast

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
DECODER_ERROR = "message:decoder_error"
# Isolating the messages that make a batch-level step raise costs one attempt per probe (~25 ms for
# the gate); past this many a failing part is dead-lettered whole rather than stall its topic.
MAX_ISOLATION_PROBES = 200
_REASON_CHARS = 1_000
_BOM = b"\xef\xbb\xbf"
# What one message can provoke: any exception, and a panic in polars' Rust code (a BaseException).
_UNEXPECTED: tuple[type[BaseException], ...] = (Exception, pl.exceptions.PanicException)
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
        # A reason may quote the message; it must still be a string Arrow can store.
        self.reasons.setdefault(index, []).append(reason.encode("utf-8", "backslashreplace").decode("utf-8"))

    def decoder_error(self, index: int, error: BaseException, context: str = "") -> None:
        text = f"{type(error).__name__}: {error}"
        if len(text) > _REASON_CHARS:
            text = text[:_REASON_CHARS] + " [...]"
        self.add(index, DECODER_ERROR, f"decoder error: {text}{context}")


def _json_schema(contract: Contract) -> pa.Schema:
    envelope = {name: pa.string() for name in ENVELOPE} | {"schema_version": pa.int64()}
    payload = pa.struct([(f.name, KINDS[f.kind].arrow) for f in contract.storage_fields])
    return pa.schema([(name, payload if name == "payload" else arrow_type) for name, arrow_type in envelope.items()])


def _read(values: list[bytes], contract: Contract, *, max_event_bytes: int, pretty: bool = False) -> pa.Table:
    """One Arrow parse of compact JSON messages, one per row; raises if any message is not an event.

    ``pretty``: messages may contain newlines (slower; for a message parsed alone).
    """
    joined = b"\n".join(values)
    if not pretty and joined.count(b"\n") != len(values) - 1:
        raise ValueError("a message contains a newline")
    # Arrow's reader checks neither that strings are UTF-8 (the bytes would land, and polars panics
    # reading them) nor rejects a byte order mark at the start of its input; msgspec rejects both.
    if joined.startswith(_BOM):
        raise ValueError("a byte order mark is not JSON")
    if not joined.isascii():
        joined.decode("utf-8")
    options = pa_json.ParseOptions(
        explicit_schema=_json_schema(contract), unexpected_field_behavior="ignore", newlines_in_values=pretty
    )
    read = pa_json.ReadOptions(block_size=max(1 << 24, 2 * max_event_bytes))  # a block holds any message
    table = pa_json.read_json(io.BytesIO(joined), parse_options=options, read_options=read)
    if table.num_rows != len(values):
        raise ValueError(f"{len(values)} messages parsed into {table.num_rows} rows")
    return table


def _parse(values: list[bytes], contract: Contract, *, max_event_bytes: int) -> pl.DataFrame | None:
    """One vectorised parse of the batch, or None if any message breaks it."""
    try:
        return pl.DataFrame(_read(values, contract, max_event_bytes=max_event_bytes))
    except _UNEXPECTED:  # the per-message path finds out which message, and why
        return None


def _parse_each(
    contract: Contract, parseable: list[int], candidates: list[bytes], rejected: _Rejections, *, max_event_bytes: int
) -> tuple[list[int], pl.DataFrame]:
    """The slow path: judge message by message, then parse the good ones (their indexes, their rows)."""
    struct = storage_struct(contract)
    kept: list[int] = []
    normalised: list[bytes] = []
    deferred: list[tuple[int, Exception]] = []  # msgspec's verdict is not the fast path's: Arrow judges
    for index, value in zip(parseable, candidates, strict=True):
        try:
            normalised.append(_ENCODER.encode(msgspec.json.decode(value, type=struct)))
            kept.append(index)
        except (msgspec.ValidationError, UnicodeDecodeError) as error:  # a ValidationError is a DecodeError
            rejected.add(index, *_decode_error(error))
        except msgspec.DecodeError as error:
            if b"NaN" in value or b"Inf" in value:  # Arrow's reader takes NaN and Infinity for numbers
                deferred.append((index, error))
            else:
                rejected.add(index, *_decode_error(error))
        except RecursionError as error:
            # msgspec walks nested values (even of fields it skips) recursively, so a message nested
            # deeper than the recursion limit is beyond it; Arrow's reader is not.
            deferred.append((index, error))
        except _UNEXPECTED as error:
            rejected.decoder_error(index, error)
    values = dict(zip(kept, normalised, strict=True))
    # msgspec's types are wider than Arrow's (ints beyond int64, decimals beyond a double): a message
    # msgspec accepts can still break the parse, so the parse is isolated too.
    parts, failed = _isolate(
        kept, lambda part: _read([values[i] for i in part], contract, max_event_bytes=max_event_bytes)
    )
    for index, culprit in failed.items():
        rejected.decoder_error(index, culprit)
    originals = dict(zip(parseable, candidates, strict=True))
    for index, objection in deferred:
        try:
            parts.append(([index], _read([originals[index]], contract, max_event_bytes=max_event_bytes, pretty=True)))
        except UnicodeDecodeError as error:
            rejected.add(index, *_decode_error(error))
        except _UNEXPECTED as error:
            if isinstance(objection, msgspec.DecodeError):
                rejected.add(index, *_decode_error(objection))
            else:
                rejected.decoder_error(index, objection, f"; read without recursion: {type(error).__name__}: {error}")
    if not parts:
        return [], pl.DataFrame(_json_schema(contract).empty_table())
    indexes = [index for part, _ in parts for index in part]
    table = pa.concat_tables([table for _, table in parts])
    order = sorted(range(len(indexes)), key=indexes.__getitem__)
    return [indexes[i] for i in order], pl.DataFrame(table.take(order))


T = TypeVar("T")


def _isolate(
    indexes: list[int],
    attempt: Callable[[list[int]], T],
    *,
    known_to_fail: BaseException | None = None,
    budget: int = MAX_ISOLATION_PROBES,
) -> tuple[list[tuple[list[int], T]], dict[int, BaseException]]:
    """Run ``attempt`` on ``indexes``, halving every part that raises until the messages that raise
    alone are found: the parts that succeeded with their results (in order), and per failed message
    the exception. Once ``budget`` parts have been split, a part that raises fails whole.

    One culprit among n messages costs about 2·log2(n) attempts; ``known_to_fail`` (the error of an
    attempt on all of ``indexes`` already made) saves the first.
    """
    done: list[tuple[list[int], T]] = []
    failed: dict[int, BaseException] = {}
    pending: list[tuple[list[int], BaseException | None]] = [(indexes, known_to_fail)] if indexes else []
    while pending:
        part, error = pending.pop()
        if error is None:
            try:
                done.append((part, attempt(part)))
                continue
            except _UNEXPECTED as raised:
                error = raised
        if len(part) == 1 or budget <= 0:
            failed.update(dict.fromkeys(part, error))
        else:
            budget -= 1
            half = len(part) // 2
            pending += [(part[half:], None), (part[:half], None)]  # the first half next
    return done, failed


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
    event_at = pl.col("timestamp").str.to_datetime(TIMESTAMP_FORMAT, time_zone="UTC", time_unit="us", strict=False)
    return frame.with_columns(
        # A year is four digits (chrono's %Y also reads -0001 or +12345, which no datetime of Python holds).
        event_at=pl.when(event_at.dt.year().is_between(1, 9999)).then(event_at),
        kafka_key=pl.Series([k.decode("utf-8", "replace") if k is not None else None for k in keys], dtype=pl.String),
        **{f"payload.{f.name}": pl.col("payload").struct.field(f.name) for f in contract.storage_fields},
    )


def _to_rows(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    payload_fields = []
    for f in contract.storage_fields:
        column = pl.col(f"payload.{f.name}")
        if f.kind == "decimal":
            # Even with strict=False, polars raises on a value the precision cannot hold: null it first.
            rounded = column.round(f.scale)
            fits = rounded.abs() < 10 ** (f.precision - f.scale)
            column = pl.when(fits).then(rounded).cast(pl.Decimal(f.precision, f.scale), strict=False)
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
        except _UNEXPECTED:
            # Not JSON (a dead letter already), or nested too deep for msgspec (judged by Arrow above):
            # either way this sample cannot say which fields it has.
            continue
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
    frame = _parse(candidates, contract, max_event_bytes=max_event_bytes)
    if frame is None:
        # Slow path: find the messages that break the batch, normalise the rest to compact JSON.
        parseable, frame = _parse_each(contract, parseable, candidates, rejected, max_event_bytes=max_event_bytes)

    def judge(rows: list[int] | None) -> _Judged:
        """The gate's verdict on ``rows`` of ``frame`` (None: all of them, the usual case)."""
        if rows is None:
            return _judge(frame, parseable, contract, messages, context, ingested_at, target)
        return _judge(frame[rows], [parseable[r] for r in rows], contract, messages, context, ingested_at, target)

    try:
        judged = judge(None)
    except _UNEXPECTED as error:
        judged = _judge_isolating(judge, len(parseable), error, parseable, rejected, target)
    for index, failed in judged.failures.items():
        for check, reason in failed:
            rejected.add(index, check, reason)
    return DecodedBatch(
        rows=judged.rows,
        dead_letters=dead_letter_rows(
            messages, rejected, ingested_at, versions=judged.versions if rejected.checks else {}
        ),
        unknown_fields=_unknown_fields(candidates, contract),
        keys_not_user_id=judged.keys_not_user_id,
    )


@dataclass(frozen=True)
class _Judged:
    """What the gate made of parsed messages: the rows that land, and per message index its failed checks."""

    rows: pa.Table
    failures: dict[int, list[tuple[str, str]]]
    parseable: list[int]
    declared: pl.Series
    """``schema_version`` as each message of ``parseable`` declared it."""
    keys_not_user_id: int

    @property
    def versions(self) -> dict[int, int | None]:
        return dict(zip(self.parseable, self.declared.to_list(), strict=True))


def _judge(
    frame: pl.DataFrame,
    parseable: list[int],
    contract: Contract,
    messages: RawMessages,
    context: GateContext,
    ingested_at: datetime,
    target: pa.Schema,
) -> _Judged:
    flat = _flatten(frame, contract, messages, parseable)
    failures = gate(flat, contract, context)
    failed_rows = sorted(failures.checks)
    everything = len(parseable) == len(messages)  # the slow path may have rejected some
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
    return _Judged(
        rows=good.select(target.names).to_arrow().cast(target),
        failures={
            parseable[row]: list(zip(checks, failures.reasons[row], strict=True))
            for row, checks in failures.checks.items()
        },
        parseable=parseable,
        declared=flat["schema_version"],
        keys_not_user_id=good.filter(~pl.col("kafka_key").eq_missing(pl.col("user_id"))).height,
    )


def _judge_isolating(
    judge: Callable[[list[int] | None], _Judged],
    count: int,
    error: BaseException,
    parseable: list[int],
    rejected: _Rejections,
    target: pa.Schema,
) -> _Judged:
    """The gate (or a step around it) raised on the whole batch: dead-letter the messages it raises on
    alone, and judge the others together again (so checks across the batch, such as duplicate
    event_ids, still see all of them)."""
    _, failed = _isolate(list(range(count)), judge, known_to_fail=error)
    for row, culprit in failed.items():
        rejected.decoder_error(parseable[row], culprit)
    rest = [row for row in range(count) if row not in failed]
    try:
        return judge(rest)
    except _UNEXPECTED as batch_error:
        # No message raises alone, yet together they do: dead letters (which can be replayed) rather
        # than a batch that fails on every retry and stops its topic.
        for row in rest:
            rejected.decoder_error(parseable[row], batch_error, " (raised by its batch as a whole, not by one message)")
        empty = pl.Series("schema_version", [], dtype=pl.Int64)
        return _Judged(target.empty_table(), {}, [], empty, 0)


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
