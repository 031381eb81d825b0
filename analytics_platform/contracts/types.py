"""How a payload field's kind is spelled in every system it passes through, in one table.

A schema declares a field in Avro (``long``, ``["null", "double"]``, a bytes ``decimal``); the decoder
parses it from JSON with Arrow, the gate checks it in polars, producers validate it with msgspec,
the raw table stores it in Iceberg and the marts read it in DuckDB. Each of those spellings is here,
so adding a kind is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
import polars as pl
import pyarrow as pa
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DecimalType,
    DoubleType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

FieldKind = Literal["string", "int", "long", "double", "boolean", "decimal"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_INT32 = Annotated[int, msgspec.Meta(ge=INT32_MIN, le=INT32_MAX)]


@dataclass(frozen=True)
class KindTypes:
    """One kind's type in each system (decimals are parsed as floats and rounded to scale afterwards)."""

    arrow: pa.DataType  # Arrow's JSON reader, with an explicit schema
    polars: type[pl.DataType]  # the batch gate
    python: Any  # msgspec validation (producers' edge check, the decoder's slow path)
    iceberg: IcebergType | None  # the raw table's column (None: depends on precision and scale)


KINDS: dict[FieldKind, KindTypes] = {
    "string": KindTypes(pa.string(), pl.String, str, StringType()),
    "int": KindTypes(pa.int64(), pl.Int64, _INT32, IntegerType()),
    "long": KindTypes(pa.int64(), pl.Int64, int, LongType()),
    "double": KindTypes(pa.float64(), pl.Float64, float, DoubleType()),
    "boolean": KindTypes(pa.bool_(), pl.Boolean, bool, BooleanType()),
    "decimal": KindTypes(pa.float64(), pl.Float64, Decimal, None),
}
# Avro primitive types a payload field may have, and their kind ("float" widens to double).
AVRO_PRIMITIVE_KINDS: dict[str, FieldKind] = {
    "string": "string",
    "int": "int",
    "long": "long",
    "double": "double",
    "float": "double",
    "boolean": "boolean",
}


def iceberg_type(kind: FieldKind, precision: int = 0, scale: int = 0) -> IcebergType:
    """The raw table's column type of a payload field."""
    if kind == "decimal":
        return DecimalType(precision, scale)
    column = KINDS[kind].iceberg
    assert column is not None
    return column


def duckdb_type(field: NestedField) -> str:
    """DuckDB's spelling of an Iceberg column type (for an empty stand-in of a table with no snapshot)."""
    field_type = field.field_type
    if isinstance(field_type, StructType):
        return f"struct({', '.join(f'{child.name} {duckdb_type(child)}' for child in field_type.fields)})"
    if isinstance(field_type, ListType):
        return f"{duckdb_type(field_type.element_field)}[]"
    if isinstance(field_type, DecimalType):
        return f"decimal({field_type.precision}, {field_type.scale})"
    simple: dict[type, str] = {
        TimestamptzType: "timestamptz",
        IntegerType: "integer",
        LongType: "bigint",
        DoubleType: "double",
        BooleanType: "boolean",
        BinaryType: "blob",
    }
    return simple.get(type(field_type), "varchar")
