"""Whether a new event schema version may be published next to the versions before it.

Two independent gates: the declared Schema Registry compatibility mode (can consumers and producers on
different versions read each other's data?) and the storage rule (can the raw Iceberg table keep its columns?).
"""

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)
from avro.constants import PRIMITIVE_TYPES
from avro.schema import RecordSchema, Schema, UnionSchema, parse


class CompatibilityMode(StrEnum):
    """Confluent Schema Registry's modes; ``*_TRANSITIVE`` checks every previous version, the others the latest."""

    BACKWARD = "BACKWARD"  # the new schema reads data written with previous versions: upgrade consumers first
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"  # previous schemas read data written with the new one: upgrade producers first
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"  # both
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


@dataclass(frozen=True)
class Incompatibility:
    """One reason a new schema version may not be published."""

    field: str  # dotted path such as ``payload.item_count``; ``(record)`` for the record itself
    message: str  # what is wrong and what would make it compatible
    against_version: int
    rule: str  # the compatibility mode, or ``storage``

    def __str__(self) -> str:
        return f"{self.field}: {self.message} (vs v{self.against_version}, {self.rule})"


def check_compatibility(
    new: Mapping[str, Any], previous: Sequence[tuple[int, Mapping[str, Any]]], mode: CompatibilityMode
) -> list[Incompatibility]:
    """Every incompatibility of ``new`` with ``previous`` (``[(version, schema), ...]``, oldest first) under ``mode``.

    Raises:
        avro.errors.SchemaParseException: A schema is not valid Avro.

    Note:
        Avro's checker merges all problems into unpaired sets of messages and locations, and loses the location of
        anything inside a union (``["null", {record}]`` reports only "reader union lacking writer type: RECORD").
        So records are walked here, field by field, and the checker only judges the types that are not records.
    """
    if mode is CompatibilityMode.NONE or not previous:
        return []
    against = previous if mode.endswith("_TRANSITIVE") else previous[-1:]
    new_schema = _parse(new)
    problems: list[Incompatibility] = []
    for version, schema in against:
        old_schema = _parse(schema)
        directions = [(new_schema, old_schema, True)] if not mode.startswith("FORWARD") else []
        directions += [(old_schema, new_schema, False)] if not mode.startswith("BACKWARD") else []
        for reader, writer, reader_is_new in directions:
            for path, message in _unreadable(reader, writer, (), reader_is_new, version):
                problems.append(Incompatibility(_dotted(path), message, version, mode.value))
    return problems


def check_storage_evolution(
    new: Mapping[str, Any], previous: Sequence[tuple[int, Mapping[str, Any]]]
) -> list[Incompatibility]:
    """Type changes of fields kept from the latest previous version that the raw Iceberg table cannot absorb.

    Allowed are Iceberg's promotions (int→long, float→double, decimal(P,S)→decimal(P',S) with P'>P) and
    optionality changes (``T`` ↔ ``["null", T]``); nested records are compared field by field.

    Note:
        Arrays, maps and multi-branch unions must keep their exact type: this gate does not look inside them.
    """
    if not previous:
        return []
    version, latest = previous[-1]
    return [
        Incompatibility(_dotted(path), message, version, "storage")
        for path, message in _storage_changes(_parse(latest), _parse(new), ())
    ]


def _parse(schema: Mapping[str, Any]) -> Schema:
    return parse(json.dumps(schema))


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "(record)"


def _avro_problems(reader: Schema, writer: Schema) -> list[str]:
    """Avro's own verdict on a pair of types; a fresh checker each time, as it memoizes by object id."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    return sorted(result.messages) if result.compatibility is SchemaCompatibilityType.incompatible else []


def _record_branch(schema: Schema) -> RecordSchema | None:
    """The record a field holds, also when it is a union such as ``["null", {record}]``."""
    branches = schema.schemas if isinstance(schema, UnionSchema) else [schema]
    records = [branch for branch in branches if isinstance(branch, RecordSchema)]
    return records[0] if len(records) == 1 else None


def _unreadable(
    reader: Schema, writer: Schema, path: tuple[str, ...], reader_is_new: bool, version: int
) -> Iterator[tuple[tuple[str, ...], str]]:
    """(field path, message) for everything ``writer`` may write that ``reader`` cannot read."""
    reading = f"the new schema cannot read v{version} data" if reader_is_new else f"v{version} cannot read new data"
    reader_record, writer_record = _record_branch(reader), _record_branch(writer)
    if reader_record is None or writer_record is None:
        if (messages := "; ".join(_avro_problems(reader, writer))) and reader.type == writer.type == "enum":
            yield path, f'{reading}: symbols {messages} are unknown to the reader, whose enum needs a "default" symbol'
        elif messages:
            yield path, f"type changed, {reading} ({messages}); add a new field instead"
        return
    for branch in writer.schemas if isinstance(writer, UnionSchema) else []:
        if branch is not writer_record and _avro_problems(reader, branch):
            yield path, f"may hold {branch.type}, {reading}; keep the same union branches"
    if not schema_name_equals(reader_record, writer_record):
        yield path, f"record renamed {writer_record.fullname} → {reader_record.fullname}, {reading}; add an alias"
    for field in reader_record.fields:
        writer_field, field_path = lookup_writer_field(writer_record, field), (*path, field.name)
        if writer_field is not None:
            yield from _unreadable(field.type, writer_field.type, field_path, reader_is_new, version)
        elif not field.has_default:
            name = _dotted(field_path)
            added = f'added field {name} has no default: a compatible addition needs "default": null with type '
            added += '["null", ...] (for a rename, also "aliases" with the old name)'
            removed = f"removed field {name} has no default in v{version}, so consumers on v{version} cannot read "
            removed += "new data: keep the field, or first publish a version that gives it a default"
            yield field_path, added if reader_is_new else removed


_PROMOTIONS = {("int", "long"), ("float", "double")}
_DECIMAL = re.compile(r"decimal\((?P<precision>\d+),(?P<scale>\d+)\)")


def _column_type(schema: Schema) -> str:
    """What the raw Iceberg column of a non-record field is, optionality aside."""
    non_null = [branch for branch in schema.schemas if branch.type != "null"] if isinstance(schema, UnionSchema) else []
    schema = non_null[0] if len(non_null) == 1 else schema
    logical = schema.get_prop("logicalType")
    if logical == "decimal":
        return f"decimal({schema.get_prop('precision')},{schema.get_prop('scale') or 0})"
    if logical or schema.type in PRIMITIVE_TYPES:
        return str(logical or schema.type)
    return "string" if schema.type == "enum" else json.dumps(schema.to_json(), sort_keys=True)


def _promotable(old: str, new: str) -> bool:
    old_d, new_d = _DECIMAL.fullmatch(old), _DECIMAL.fullmatch(new)
    if old_d and new_d:
        return old_d["scale"] == new_d["scale"] and int(old_d["precision"]) <= int(new_d["precision"])
    return old == new or (old, new) in _PROMOTIONS


def _storage_changes(old: Schema, new: Schema, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    old_record, new_record = _record_branch(old), _record_branch(new)
    if old_record is not None and new_record is not None:
        new_fields = {field.name: field for field in new_record.fields}
        for field in old_record.fields:
            if field.name in new_fields:
                yield from _storage_changes(field.type, new_fields[field.name].type, (*path, field.name))
        return
    old_type = "record" if old_record is not None else _column_type(old)
    new_type = "record" if new_record is not None else _column_type(new)
    if not _promotable(old_type, new_type):
        message = f"type changed from {old_type} to {new_type}: the raw Iceberg table keeps one type per column and "
        message += "only promotes int→long, float→double and decimal precision, so this would need a table rewrite; "
        yield path, message + "add a new field instead"
