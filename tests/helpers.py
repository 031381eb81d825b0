"""Small test helpers: produce generated events, read what landed."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from confluent_kafka import Producer

from analytics_platform.contracts.envelope import event_types
from analytics_platform.contracts.registry import DEFAULT_SCHEMA_DIR
from analytics_platform.kafka.producer import publish
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import generate_events

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def produce(settings: Settings, count: int, *, seed: int = 7, days: int = 2) -> list[dict[str, Any]]:
    events = generate_events(count, seed=seed, days=days)
    assert publish(events, settings) == count
    return events


def produce_events(settings: Settings, events: list[dict[str, Any]]) -> None:
    assert publish(events, settings) == len(events)


def landed(settings: Settings, event_type: str) -> pa.Table:
    table = ensure_raw_table(load_catalog(settings), settings, event_types()[event_type])
    return table.scan().to_arrow()


def counts_by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(event["event_type"] for event in events)


def event_ids(settings: Settings, event_type: str) -> list[str]:
    return landed(settings, event_type).column("event_id").to_pylist()


def schema_dir_with_v2(root: Path, event_type: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the repo's schema registry where ``event_type`` has a v2: v1 changed by ``change``."""
    target = root / "schemas"
    shutil.copytree(DEFAULT_SCHEMA_DIR, target)
    schema = json.loads((target / event_type / "v1.avsc").read_text())
    change(schema)
    (target / event_type / "v2.avsc").write_text(json.dumps(schema, indent=2))
    return target


def add_payload_field(name: str, avro_type: Any, **extra: Any) -> Callable[[dict[str, Any]], None]:
    def change(schema: dict[str, Any]) -> None:
        payload = next(f for f in schema["fields"] if f["name"] == "payload")
        payload["type"]["fields"].append({"name": name, "type": avro_type, **extra})

    return change


def send_raw(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (value, key) pairs as they are, bypassing the EventProducer's edge validation."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for value, key in messages:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


def wait_for(condition: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 1.0) -> T:
    """Poll ``condition`` until it returns something truthy (returned), failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
