"""Replay dead letters through the normal decode-and-gate path after a fix (e.g. a new schema version).

A replay reads the chosen rows of ``raw.dead_letter`` (original bytes, key, topic, partition, offset),
decodes and gates them exactly like a Kafka batch, appends the ones that now pass to their raw table,
and records them in ``raw.dead_letter_replays``. Rows keep their original Kafka coordinates, so a
replayed event is traceable to the message that carried it.

Idempotent: the replay id is a hash of the chosen messages; the raw append carries it as a snapshot
property, so a replay that died after the raw commit finds it and only writes the replay records,
and rows already recorded as replayed are never chosen again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from analytics_platform.contracts.envelope import event_type_for_topic
from analytics_platform.exceptions import ConcurrentIngestError
from analytics_platform.ingest.decode import decode_batch
from analytics_platform.ingest.dedup import DedupWindow
from analytics_platform.ingest.land import gate_context
from analytics_platform.kafka.reader import RawMessages
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, RUN_ID_KEY
from analytics_platform.lakehouse.tables import (
    REPLAYS_TABLE,
    contract_for,
    ensure_raw_table,
    ensure_replays_table,
    read_dead_letters,
    table_identifier,
)
from analytics_platform.settings import Settings

REPLAY_ID_KEY = "dead-letter.replay-id"
MessageKey = tuple[str, int, int]
"""(topic, partition, offset): a dead letter's identity."""


@dataclass
class ReplayResult:
    """What one replay did, per topic."""

    chosen: int = 0
    landed: dict[str, int] = field(default_factory=dict)
    still_failing: dict[MessageKey, str] = field(default_factory=dict)
    """Messages that fail again, with the reason; they stay dead letters, not replayed."""


def _keys(table: pa.Table) -> list[MessageKey]:
    return list(
        zip(
            table.column("kafka_topic").to_pylist(),
            table.column("kafka_partition").to_pylist(),
            table.column("kafka_offset").to_pylist(),
            strict=True,
        )
    )


def pending_dead_letters(
    catalog: Catalog,
    settings: Settings,
    *,
    topic: str | None = None,
    check: str | None = None,
    keys: Iterable[MessageKey] | None = None,
) -> pa.Table:
    """Dead letters not replayed yet, optionally only of ``topic``, failing ``check`` or with these ``keys``."""
    letters = read_dead_letters(catalog, settings)
    replayed = set(_keys(read_dead_letters(catalog, settings, REPLAYS_TABLE)))
    wanted = set(keys) if keys is not None else None
    seen: set[MessageKey] = set()
    mask = []
    for key, checks in zip(_keys(letters), letters.column("failed_checks").to_pylist(), strict=True):
        keep = (
            key not in replayed
            and key not in seen
            and (topic is None or key[0] == topic)
            and (check is None or any(c == check or c.endswith(f":{check}") for c in checks))
            and (wanted is None or key in wanted)
        )
        seen.add(key)
        mask.append(keep)
    return letters.filter(pa.array(mask, type=pa.bool_())).sort_by(
        [("kafka_topic", "ascending"), ("kafka_partition", "ascending"), ("kafka_offset", "ascending")]
    )


def _replay_snapshot_time(table: Table, replay_id: str) -> str | None:
    """The ingest time of the raw snapshot an earlier attempt of this replay committed, if any."""
    for snapshot in table.snapshots():
        properties = snapshot.summary.additional_properties if snapshot.summary else {}
        if properties.get(REPLAY_ID_KEY) == replay_id:
            return properties[INGESTED_AT_KEY]
    return None


def replay_dead_letters(
    settings: Settings,
    *,
    topic: str | None = None,
    check: str | None = None,
    keys: Iterable[MessageKey] | None = None,
    dry_run: bool = False,
    catalog: Catalog | None = None,
    run_id: str | None = None,
) -> ReplayResult:
    """Replay the pending dead letters that match; see the module docstring for the guarantees.

    ``run_id``, the Dagster run replaying them, is recorded in the raw snapshot (drill-down links to it).

    Raises:
        ConcurrentIngestError: an ingest run committed to the same raw table meanwhile; run it again.
    """
    catalog = catalog or load_catalog(settings)
    chosen = pending_dead_letters(catalog, settings, topic=topic, check=check, keys=keys)
    result = ReplayResult(chosen=chosen.num_rows)
    for name in sorted(set(chosen.column("kafka_topic").to_pylist())):
        letters = chosen.filter(pc.equal(chosen.column("kafka_topic"), name))
        messages = RawMessages(
            name,
            letters.column("kafka_partition").to_pylist(),
            letters.column("kafka_offset").to_pylist(),
            letters.column("kafka_key").to_pylist(),
            letters.column("raw_value").to_pylist(),
        )
        try:
            event_type = event_type_for_topic(name)
        except KeyError as error:
            for key in _keys(letters):
                result.still_failing[key] = str(error.args[0])
            continue
        table = ensure_raw_table(catalog, settings, event_type)
        replay_id = hashlib.sha256(repr(_keys(letters)).encode()).hexdigest()[:16]
        earlier = _replay_snapshot_time(table, replay_id)
        if earlier is not None:
            # A previous attempt appended the rows and died before recording them: record them now.
            landed = _keys(
                table.scan(
                    row_filter=f"ingested_at = '{earlier}'",
                    selected_fields=("kafka_topic", "kafka_partition", "kafka_offset"),
                ).to_arrow()
            )
            now = datetime.fromisoformat(earlier)
        else:
            now = datetime.now(UTC)
            decoded = decode_batch(
                contract_for(settings, event_type),
                messages,
                now,
                table.schema().as_arrow(),
                gate_context(settings, name, now, DedupWindow.read(table, settings.dedup_window_events)),
                max_event_bytes=settings.max_event_bytes,
            )
            reasons = decoded.dead_letters.column("reason").to_pylist()
            result.still_failing.update(zip(_keys(decoded.dead_letters), reasons, strict=True))
            landed = _keys(decoded.rows)
            if dry_run or not landed:
                result.landed[name] = len(landed)
                continue
            properties = {REPLAY_ID_KEY: replay_id, INGESTED_AT_KEY: now.isoformat()}
            if run_id is not None:
                properties[RUN_ID_KEY] = run_id
            try:
                table.append(decoded.rows, snapshot_properties=properties)
            except CommitFailedException as error:
                raise ConcurrentIngestError(
                    f"{table.name()} moved during the replay ({error}); nothing was written, run the replay again"
                ) from error
        result.landed[name] = len(landed)
        replays = ensure_replays_table(catalog, settings)
        replays.append(
            pa.Table.from_pydict(
                {
                    "kafka_topic": [key[0] for key in landed],
                    "kafka_partition": [key[1] for key in landed],
                    "kafka_offset": [key[2] for key in landed],
                    "replay_id": [replay_id] * len(landed),
                    "landed_in": [table_identifier(settings, event_type.name)] * len(landed),
                    "replayed_at": [now] * len(landed),
                },
                schema=replays.schema().as_arrow(),
            )
        )
    return result
