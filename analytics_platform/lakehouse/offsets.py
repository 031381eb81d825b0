"""Kafka offsets kept in Iceberg snapshot summaries: the single source of truth for where to resume.

Every ingest snapshot records, per partition, the next offset to read and a fingerprint of the last
message landed. Because the offsets commit atomically with the rows, a crash can never separate the
two; because the fingerprint is checked before reading on, a Kafka log that was replaced (the
memory-only broker restarted) is detected instead of silently skipped or re-read.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

TOPIC_KEY = "kafka.topic"
NEXT_OFFSETS_KEY = "kafka.next-offsets"
START_OFFSETS_KEY = "kafka.start-offsets"
FINGERPRINTS_KEY = "kafka.fingerprints"
RESET_KEY = "kafka.offsets-reset"


def fingerprint(value: bytes | None) -> str:
    """A short checksum of a message value, enough to tell two different logs apart."""
    return f"{zlib.crc32(value or b''):08x}"


@dataclass(frozen=True)
class StoredOffsets:
    """Where ingestion of one topic resumes, as committed in the table's latest ingest snapshot."""

    topic: str
    next_offsets: dict[int, int] = field(default_factory=dict)
    fingerprints: dict[int, str] = field(default_factory=dict)
    snapshot_id: int | None = None

    def next_offset(self, partition: int) -> int:
        return self.next_offsets.get(partition, 0)


def stored_offsets(table: Table, topic: str) -> StoredOffsets:
    """Walk back from the current snapshot to the newest one that recorded offsets for ``topic``."""
    current = table.current_snapshot()
    if current is None:
        return StoredOffsets(topic)
    for snapshot in ancestors_of(current, table.metadata):
        properties = snapshot.summary.additional_properties if snapshot.summary else {}
        if properties.get(TOPIC_KEY) == topic and NEXT_OFFSETS_KEY in properties:
            return StoredOffsets(
                topic=topic,
                next_offsets={int(p): int(o) for p, o in json.loads(properties[NEXT_OFFSETS_KEY]).items()},
                fingerprints={int(p): f for p, f in json.loads(properties.get(FINGERPRINTS_KEY, "{}")).items()},
                snapshot_id=snapshot.snapshot_id,
            )
    return StoredOffsets(topic)


def offsets_properties(
    topic: str, start: dict[int, int], next_offsets: dict[int, int], fingerprints: dict[int, str]
) -> dict[str, str]:
    """Snapshot summary properties that commit a batch's offsets with its rows."""
    return {
        TOPIC_KEY: topic,
        START_OFFSETS_KEY: json.dumps({str(p): o for p, o in sorted(start.items())}),
        NEXT_OFFSETS_KEY: json.dumps({str(p): o for p, o in sorted(next_offsets.items())}),
        FINGERPRINTS_KEY: json.dumps({str(p): f for p, f in sorted(fingerprints.items())}),
    }


def reset_offsets(table: Table, topic: str, next_offsets: dict[int, int], reason: str) -> int:
    """Record a new resume point without adding rows (an empty snapshot); returns its snapshot id.

    Use after the Kafka log was replaced (embedded broker restart): the rows already landed stay,
    ingestion continues from ``next_offsets`` of the new log and the reset is visible in history.
    """
    properties = offsets_properties(topic, next_offsets, next_offsets, {})
    properties[RESET_KEY] = reason
    table.append(pa.Table.from_pylist([], schema=table.schema().as_arrow()), snapshot_properties=properties)
    snapshot = table.current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id
