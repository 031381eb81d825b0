"""The envelope every event shares, the event types and their topics, and the JSON wire encoding.

What each event type's envelope may contain is its versioned schema in the registry
(:mod:`analytics_platform.contracts.registry`); the set of event types is the registry's directories
in this package, fixed when the code is deployed because every type gets its own topic, table and
assets. Nothing here reads the registry at import: :func:`event_types` does, on first use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec

TOPIC_PREFIX = "events."

# The envelope every event type shares, in wire order: name -> Avro type. Schemas, the decoder, the
# gate, the msgspec structs and the raw tables' columns are all derived from this one mapping.
ENVELOPE: dict[str, str] = {
    "event_id": "string",
    "event_type": "string",
    "timestamp": "string",
    "source": "string",
    "user_id": "string",
    "session_id": "string",
    "correlation_id": "string",
    "payload": "record",
    "schema_version": "int",
}
ENVELOPE_STRINGS = tuple(name for name, avro_type in ENVELOPE.items() if avro_type == "string")


@dataclass(frozen=True)
class EventType:
    """An event type and the topic that carries it."""

    name: str

    @property
    def topic(self) -> str:
        return f"{TOPIC_PREFIX}{self.name}"


@functools.cache
def event_types() -> dict[str, EventType]:
    """Every event type of the package's registry, by name (read once, on first use)."""
    from analytics_platform.contracts.registry import load_registry

    return {contract.event_type: EventType(contract.event_type) for contract in load_registry()}


def event_type_for_topic(topic: str) -> EventType:
    """The event type a topic carries; raises KeyError naming the known topics."""
    name = topic.removeprefix(TOPIC_PREFIX)
    known = event_types()
    if not topic.startswith(TOPIC_PREFIX) or name not in known:
        raise KeyError(f"unknown event topic {topic!r}; known topics: {', '.join(t.topic for t in known.values())}")
    return known[name]


def event_topics() -> list[str]:
    """The topic of every event type, sorted."""
    return sorted(event_type.topic for event_type in event_types().values())


# Money travels as a JSON number (what web and mobile clients send), never as a float in storage.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode_event(event: dict[str, Any]) -> bytes:
    """Serialise an envelope dict to the compact JSON bytes producers put on the wire."""
    return _ENCODER.encode(event)
