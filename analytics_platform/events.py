"""Event types, their topics and the JSON wire encoding of the common envelope.

What each event type's envelope may contain is its versioned schema in the registry
(:mod:`analytics_platform.contracts`); the set of event types is the registry's directories in this
package, fixed when the code is deployed because every type gets its own topic, table and assets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from analytics_platform.contracts.registry import ENVELOPE, TOPIC_PREFIX, load_registry

ENVELOPE_FIELDS = tuple(ENVELOPE)


@dataclass(frozen=True)
class EventType:
    """An event type and the topic that carries it."""

    name: str

    @property
    def topic(self) -> str:
        return f"{TOPIC_PREFIX}{self.name}"


EVENT_TYPES: dict[str, EventType] = {c.event_type: EventType(c.event_type) for c in load_registry()}


def event_type_for_topic(topic: str) -> EventType:
    """The event type a topic carries; raises KeyError naming the known topics."""
    name = topic.removeprefix(TOPIC_PREFIX)
    if not topic.startswith(TOPIC_PREFIX) or name not in EVENT_TYPES:
        known = ", ".join(t.topic for t in EVENT_TYPES.values())
        raise KeyError(f"unknown event topic {topic!r}; known topics: {known}")
    return EVENT_TYPES[name]


# Money travels as a JSON number (what web and mobile clients send), never as a float in storage.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode_event(event: dict[str, Any]) -> bytes:
    """Serialise an envelope dict to the compact JSON bytes producers put on the wire."""
    return _ENCODER.encode(event)
