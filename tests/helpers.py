"""Small test helpers: produce generated events, read what landed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from analytics_platform.events import EVENT_TYPES
from analytics_platform.generator import generate_events
from analytics_platform.ingest.lakehouse import load_catalog, raw_table
from analytics_platform.producer import publish
from analytics_platform.settings import Settings


def produce(settings: Settings, count: int, *, seed: int = 7, days: int = 2) -> list[dict[str, Any]]:
    events = generate_events(count, seed=seed, days=days)
    assert publish(events, settings.bootstrap_servers) == count
    return events


def produce_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    assert publish(events, settings.bootstrap_servers) == len(events)


def landed(settings: Settings, event_type: str) -> pa.Table:
    table = raw_table(load_catalog(settings), settings, EVENT_TYPES[event_type])
    return table.scan().to_arrow()


def counts_by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(event["event_type"] for event in events)


def event_ids(settings: Settings, event_type: str) -> list[str]:
    return landed(settings, event_type).column("event_id").to_pylist()
