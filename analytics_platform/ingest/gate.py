"""The quality gate every micro-batch passes: one pandera schema per contract, validated column-wise.

The schema is built from the registry (required fields per version, ``x-checks`` rules) plus the
envelope rules every event type shares. Validation is lazy, so one pass reports every failed check
of every row; :func:`gate` turns pandera's failure cases into per-row check names and a sentence a
person can act on. Rows are judged one by one: a bad row never takes its batch down with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandera.polars as pa
import polars as pl

from analytics_platform.contracts.currencies import ISO_4217
from analytics_platform.contracts.envelope import ENVELOPE_STRINGS
from analytics_platform.contracts.registry import Contract
from analytics_platform.contracts.types import INT32_MAX, INT32_MIN, KINDS
from analytics_platform.ingest.dedup import RecentEventIds

ALREADY_LANDED = "__already_landed"


@dataclass(frozen=True)
class GateContext:
    """What the rules compare against, fixed per batch."""

    topic: str
    now: datetime
    earliest: datetime
    max_future: timedelta
    recent_event_ids: RecentEventIds = field(default_factory=RecentEventIds.empty)


@dataclass(frozen=True)
class Failures:
    """Per row index (in the validated frame): the failed check names and the reasons."""

    checks: dict[int, list[str]]
    reasons: dict[int, list[str]]


def _expr_check(name: str, expression: Callable[[str], pl.Expr], *, ignore_na: bool = True) -> pa.Check:
    """A vectorised element-wise check from a polars expression over the column (and its neighbours)."""
    return pa.Check(
        lambda data: data.lazyframe.select(expression(data.key)), error=name, ignore_na=ignore_na, name=name
    )


def _required_in(versions: list[int]) -> Callable[[str], pl.Expr]:
    """Null is allowed only in rows whose schema version does not require the field."""
    return lambda column: ~(pl.col(column).is_null() & pl.col("schema_version").is_in(versions))


def _fits_decimal(precision: int, scale: int) -> Callable[[str], pl.Expr]:
    """The value as it will be stored (rounded to ``scale``) fits the precision: 9999999999.995 is
    under 10^10 but rounds to it, which a decimal(12,2) cannot hold."""
    return lambda column: pl.col(column).round(scale).abs() < 10 ** (precision - scale)


def batch_schema(contract: Contract, context: GateContext) -> pa.DataFrameSchema:
    """The pandera schema of a decoded batch (payload flattened to ``payload.<field>`` columns)."""
    required = lambda: pa.Column(pl.String, nullable=False)  # noqa: E731 - one fresh Column per field
    columns: dict[str, pa.Column] = {name: required() for name in ENVELOPE_STRINGS}
    columns["event_id"] = pa.Column(
        pl.String,
        nullable=False,
        checks=[
            _expr_check("unique_in_batch", lambda c: pl.col(c).is_first_distinct()),
            _expr_check("not_already_landed", lambda _: ~pl.col(ALREADY_LANDED)),  # see gate()
        ],
    )
    columns["event_type"] = pa.Column(
        pl.String, nullable=False, checks=pa.Check.isin([contract.event_type], error="matches_topic")
    )
    columns["timestamp"] = pa.Column(
        pl.String,
        nullable=False,
        checks=_expr_check("iso8601_utc", lambda _: pl.col("event_at").is_not_null()),
    )
    columns["event_at"] = pa.Column(
        pl.Datetime("us", "UTC"),
        nullable=True,  # unparseable timestamps are reported once, on `timestamp`
        checks=pa.Check.in_range(context.earliest, context.now + context.max_future, error="in_bounds"),
    )
    columns["schema_version"] = pa.Column(
        pl.Int64, nullable=False, checks=pa.Check.isin(sorted(contract.versions), error="known_version")
    )
    for payload_field in contract.storage_fields:
        column = f"payload.{payload_field.name}"
        requiring = [v for v, s in contract.versions.items() if payload_field.name in s.required_payload_fields]
        checks = [_expr_check("required", _required_in(requiring), ignore_na=False)]
        if payload_field.kind == "int":
            checks.append(pa.Check.in_range(INT32_MIN, INT32_MAX, error="fits_int32"))
        if payload_field.kind == "decimal":
            checks.append(_expr_check("fits_decimal", _fits_decimal(payload_field.precision, payload_field.scale)))
        if "non_negative" in payload_field.checks:
            checks.append(pa.Check.ge(0, error="non_negative"))
        if "currency_code" in payload_field.checks:
            checks.append(pa.Check.isin(sorted(ISO_4217), error="currency_code"))
        columns[column] = pa.Column(KINDS[payload_field.kind].polars, nullable=True, checks=checks)
    return pa.DataFrameSchema(columns, name=f"{contract.event_type} batch", strict=False)


def _reason(contract: Contract, context: GateContext, column: str, check: str, value: object) -> str:
    templates: dict[str, str] = {
        "not_nullable": f"missing required field {column}",
        "required": f"missing field {column}, required by its schema version",
        "unique_in_batch": f"duplicate event_id {value}: an earlier message of this batch has it",
        "not_already_landed": f"duplicate event_id {value}: already landed in raw.{contract.event_type}",
        "matches_topic": f"event_type {value!r} does not match topic {context.topic}",
        "iso8601_utc": f"timestamp {value!r} is not ISO 8601 UTC (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)",
        "in_bounds": (
            f"timestamp {value} is outside [{context.earliest:%Y-%m-%dT%H:%M:%SZ}, now + {context.max_future}] "
            "(PLATFORM_EARLIEST_EVENT_AT, PLATFORM_MAX_EVENT_FUTURE_S)"
        ),
        "known_version": (
            f"schema_version {value} is not in the registry for {contract.event_type} "
            f"(known: {', '.join(str(v) for v in sorted(contract.versions))})"
        ),
        "fits_int32": f"{column} = {value} does not fit a 32-bit int",
        "fits_decimal": f"{column} = {value} does not fit its decimal precision",
        "non_negative": f"{column} is negative ({value})",
        "currency_code": f"{column} {value!r} is not an ISO 4217 currency code",
    }
    return templates.get(check, f"{column} failed {check} ({value!r})")


def gate(frame: pl.DataFrame, contract: Contract, context: GateContext) -> Failures:
    """Validate ``frame`` (flattened, see :func:`batch_schema`) and say which rows fail which checks."""
    frame = frame.with_columns(context.recent_event_ids.contains(frame["event_id"]).alias(ALREADY_LANDED))
    try:
        batch_schema(contract, context).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return Failures({}, {})
    if cases.filter(pl.col("index").is_null()).height:
        # A frame-level failure (a column missing or of the wrong dtype, or a check that raised instead of
        # failing rows) is a bug here or in the decoder; the decoder dead-letters the message provoking it.
        raise RuntimeError(f"the decoded batch does not have the gate's shape:\n{cases}")
    checks: dict[int, list[str]] = {}
    reasons: dict[int, list[str]] = {}
    for index, column, check, value in cases.select("index", "column", "check", "failure_case").iter_rows():
        name = "required" if check == "not_nullable" else check
        if f"{column}:{name}" in checks.get(index, []):
            continue
        checks.setdefault(index, []).append(f"{column}:{name}")
        reasons.setdefault(index, []).append(_reason(contract, context, column, check, value))
    return Failures(checks, reasons)
