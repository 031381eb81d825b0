"""Per-message validation against a schema version, with msgspec structs generated from the Avro schema.

Producers validate every event before sending (edge validation); the ingest decoder uses the same
structs to find the culprits when a batch does not parse in bulk. The structs check shape and types
only; value rules (bounds, currency codes, uniqueness) are the batch gates' job.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from analytics_platform.contracts.registry import Contract, FieldKind, PayloadField, UnknownSchemaVersion

_INT32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
_PYTHON_TYPES: dict[FieldKind, Any] = {
    "string": str,
    "int": _INT32,
    "long": int,
    "double": float,
    "boolean": bool,
    "decimal": Decimal,
}


def _struct_name(event_type: str, suffix: str) -> str:
    return f"{event_type.title().replace('_', '')}{suffix}"


def envelope_struct(event_type: str, payload: tuple[PayloadField, ...], version: Any) -> type[msgspec.Struct]:
    """A msgspec struct of the envelope; ``version`` is the ``schema_version`` type (an int or a Literal)."""
    annotations = [
        (f.name, _PYTHON_TYPES[f.kind]) if f.required else (f.name, _PYTHON_TYPES[f.kind] | None, None)
        for f in sorted(payload, key=lambda f: not f.required)
    ]
    payload_struct = msgspec.defstruct(_struct_name(event_type, "Payload"), annotations)
    return msgspec.defstruct(
        _struct_name(event_type, "Event"),
        [
            ("event_id", str),
            ("event_type", Literal[event_type]),
            ("timestamp", str),
            ("source", str),
            ("user_id", str),
            ("session_id", str),
            ("correlation_id", str),
            ("payload", payload_struct),
            ("schema_version", version),
        ],
    )


@functools.cache
def _version_struct(contract: Contract, version: int) -> type[msgspec.Struct]:
    return envelope_struct(contract.event_type, contract.version(version).payload, Literal[version])


@functools.cache
def storage_struct(contract: Contract) -> type[msgspec.Struct]:
    """The struct of every field any version declared: what a batch of mixed versions is parsed with."""
    return envelope_struct(contract.event_type, contract.storage_fields, int)


class _VersionOnly(msgspec.Struct):
    schema_version: int


def validate_message(contract: Contract, value: bytes) -> str | None:
    """None if ``value`` is a valid event of ``contract`` at the version it declares, else why not."""
    try:
        declared = msgspec.json.decode(value, type=_VersionOnly).schema_version
        msgspec.json.decode(value, type=_version_struct(contract, declared))
    except UnknownSchemaVersion as error:
        return str(error.args[0])
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        return f"does not match the {contract.event_type} schema: {error}"
    except UnicodeDecodeError as error:
        return f"not valid UTF-8: {error}"
    return None
