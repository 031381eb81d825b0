"""Per-message validation against a schema version, with msgspec structs generated from the Avro schema.

Producers validate every event before sending (edge validation); the ingest decoder uses the same
structs to find the culprits when a batch does not parse in bulk. The structs check shape and types
only; value rules (bounds, currency codes, uniqueness) are the batch gates' job.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec

from analytics_platform.contracts.envelope import ENVELOPE, ENVELOPE_STRINGS
from analytics_platform.contracts.registry import Contract, PayloadField
from analytics_platform.contracts.types import KINDS
from analytics_platform.exceptions import UnknownSchemaVersion


def _struct_name(event_type: str, suffix: str) -> str:
    return f"{event_type.title().replace('_', '')}{suffix}"


def envelope_struct(event_type: str, payload: tuple[PayloadField, ...], version: Any) -> type[msgspec.Struct]:
    """A msgspec struct of the envelope; ``version`` is the ``schema_version`` type (an int or a Literal)."""
    annotations = [
        (f.name, KINDS[f.kind].python) if f.required else (f.name, KINDS[f.kind].python | None, None)
        for f in sorted(payload, key=lambda f: not f.required)
    ]
    payload_struct = msgspec.defstruct(_struct_name(event_type, "Payload"), annotations)
    special: dict[str, Any] = {"event_type": Literal[event_type], "payload": payload_struct, "schema_version": version}
    return msgspec.defstruct(_struct_name(event_type, "Event"), [(name, special.get(name, str)) for name in ENVELOPE])


@functools.cache
def _version_struct(contract: Contract, version: int) -> type[msgspec.Struct]:
    return envelope_struct(contract.event_type, contract.version(version).payload, Literal[version])


@functools.cache
def storage_struct(contract: Contract) -> type[msgspec.Struct]:
    """Types only, every field optional: how the decoder's slow path reads a batch of mixed versions.

    Which fields are required (per version) is the batch gate's call, so a missing field gets the same
    check name whichever decode path found its row.
    """
    payload = msgspec.defstruct(
        _struct_name(contract.event_type, "StoredPayload"),
        # Plain int for int32 fields too: the gate's fits_int32 check reports out-of-range values.
        [(f.name, (int if f.kind == "int" else KINDS[f.kind].python) | None, None) for f in contract.storage_fields],
    )
    envelope: list[tuple[str, Any, None]] = [(name, str | None, None) for name in ENVELOPE_STRINGS]
    envelope += [("payload", payload | None, None), ("schema_version", int | None, None)]
    return msgspec.defstruct(_struct_name(contract.event_type, "StoredEvent"), envelope)


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
