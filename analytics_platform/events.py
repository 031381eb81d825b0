"""The event contract: the envelope every producer publishes and the typed payload of each event type.

One declaration per event type (:data:`EVENT_TYPES`) drives everything else: the msgspec structs
producers encode and the fallback decoder validates with, the polars schema of the bulk decoder and
the Iceberg schema of the ``raw.<event_type>`` table. Adding a field is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec

FieldKind = Literal["string", "int", "money"]

SCHEMA_VERSION = 1
TOPIC_PREFIX = "events."


@dataclass(frozen=True)
class PayloadField:
    """One payload field; ``money`` is a JSON number stored as decimal(12, 2)."""

    name: str
    kind: FieldKind
    required: bool = True


@dataclass(frozen=True)
class EventType:
    """An event type, its topic and the fields of its payload."""

    name: str
    fields: tuple[PayloadField, ...]

    @property
    def topic(self) -> str:
        return f"{TOPIC_PREFIX}{self.name}"

    @property
    def payload_struct(self) -> type[msgspec.Struct]:
        return _PAYLOAD_STRUCTS[self.name]

    @property
    def envelope_struct(self) -> type[msgspec.Struct]:
        return _ENVELOPE_STRUCTS[self.name]


EVENT_TYPES: dict[str, EventType] = {
    event_type.name: event_type
    for event_type in (
        EventType(
            "user_visit",
            (
                PayloadField("page", "string"),
                PayloadField("referrer", "string", required=False),
                PayloadField("product_id", "string", required=False),
            ),
        ),
        EventType(
            "add_to_cart",
            (
                PayloadField("product_id", "string"),
                PayloadField("price", "money"),
                PayloadField("quantity", "int"),
                PayloadField("currency", "string"),
            ),
        ),
        EventType(
            "checkout",
            (
                PayloadField("order_id", "string"),
                PayloadField("cart_value", "money"),
                PayloadField("item_count", "int"),
                PayloadField("currency", "string"),
            ),
        ),
        EventType(
            "purchase",
            (
                PayloadField("order_id", "string"),
                PayloadField("revenue", "money"),
                PayloadField("item_count", "int"),
                PayloadField("currency", "string"),
                PayloadField("payment_method", "string"),
            ),
        ),
    )
}

ENVELOPE_FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "source",
    "user_id",
    "session_id",
    "correlation_id",
    "payload",
    "schema_version",
)


def event_type_for_topic(topic: str) -> EventType:
    """The event type a topic carries; raises KeyError naming the known topics."""
    name = topic.removeprefix(TOPIC_PREFIX)
    if not topic.startswith(TOPIC_PREFIX) or name not in EVENT_TYPES:
        known = ", ".join(t.topic for t in EVENT_TYPES.values())
        raise KeyError(f"unknown event topic {topic!r}; known topics: {known}")
    return EVENT_TYPES[name]


_PYTHON_TYPES: dict[FieldKind, Any] = {"string": str, "int": int, "money": Decimal}


def _payload_struct(event_type_name: str, fields: tuple[PayloadField, ...]) -> type[msgspec.Struct]:
    annotations = [
        (f.name, _PYTHON_TYPES[f.kind]) if f.required else (f.name, _PYTHON_TYPES[f.kind] | None, None)
        for f in sorted(fields, key=lambda f: not f.required)
    ]
    return msgspec.defstruct(
        f"{event_type_name.title().replace('_', '')}Payload", annotations, forbid_unknown_fields=False
    )


def _envelope_struct(event_type_name: str, payload: type[msgspec.Struct]) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        f"{event_type_name.title().replace('_', '')}Event",
        [
            ("event_id", str),
            ("event_type", Literal[event_type_name]),
            ("timestamp", str),
            ("source", str),
            ("user_id", str),
            ("session_id", str),
            ("correlation_id", str),
            ("payload", payload),
            ("schema_version", int),
        ],
    )


_PAYLOAD_STRUCTS = {name: _payload_struct(name, t.fields) for name, t in EVENT_TYPES.items()}
_ENVELOPE_STRUCTS = {name: _envelope_struct(name, _PAYLOAD_STRUCTS[name]) for name in EVENT_TYPES}

# Money travels as a JSON number (what web and mobile clients send), never as a float in storage.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode_event(event: dict[str, Any]) -> bytes:
    """Serialise an envelope dict to the compact JSON bytes producers put on the wire."""
    return _ENCODER.encode(event)
