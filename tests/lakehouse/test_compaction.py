"""Compaction alongside ingestion loses and doubles nothing, keeps the offsets, lineage and "days touched",
and the commit's structural cost stays bounded (real broker, Iceberg SQL catalog and DuckDB)."""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from analytics_platform.cli import app
from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import land_batch, land_run
from analytics_platform.ingest.plan import plan_next_batch, plan_next_run
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.compaction import (
    checksum,
    compact_raw_tables,
    compact_table,
    files_by_day,
    plan_compaction,
    rewrite_group,
)
from analytics_platform.lakehouse.lineage import landings, record_before_expiry, recorded_ingested_at
from analytics_platform.lakehouse.maintenance import MAINTENANCE_KEY, carried_offsets
from analytics_platform.lakehouse.offsets import NEXT_OFFSETS_KEY, stored_offsets
from analytics_platform.lakehouse.snapshots import event_times_since, expire_old_snapshots, properties
from analytics_platform.lakehouse.tables import (
    MANIFEST_MERGE_PROPERTIES,
    SHORT_METADATA_LOG_PROPERTIES,
    ensure_raw_table,
)
from analytics_platform.serving.events import lake_connection
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from tests.helpers import produce_events

pytestmark = pytest.mark.integration

TOPIC = "events.user_visit"
USER_VISIT = event_types()["user_visit"]
LATER = datetime(2030, 1, 1, tzinfo=UTC)  # every generated day has ended long before


def _all_rows(settings: Settings) -> pa.Table:
    table = ensure_raw_table(load_catalog(settings), settings, USER_VISIT)
    return table.scan().to_arrow().sort_by("event_id")


def _event_times(rows: pa.Table) -> tuple[datetime, datetime]:
    times = rows.column("event_at").to_pylist()
    return min(times), max(times)


def _land_all(settings: Settings) -> int:
    """Land what the topic holds as ingestion does (runs of micro-batches); returns the batches committed."""
    batches = 0
    while (plan := plan_next_run(settings, TOPIC)) is not None:
        batches += len(land_run(settings, plan, run_id=f"run-{batches}"))
    return batches


def test_compaction_alongside_ingestion_loses_nothing(broker: Settings) -> None:
    events = [e for e in generate_events(900, seed=21, days=2) if e["event_type"] == "user_visit"]
    expected_ids = sorted(e["event_id"] for e in events)
    settings = broker.model_copy(update={"batch_max_events": 25, "raw_snapshots_kept": 3, "compact_target_mb": 1})
    half = len(events) // 2
    produce_events(settings, events[:half])
    assert _land_all(settings) > 5
    catalog = load_catalog(settings)
    table = ensure_raw_table(catalog, settings, USER_VISIT)
    before_rows = _all_rows(settings)
    before_snapshot = table.current_snapshot()
    assert before_snapshot is not None
    small_files = {day: len(files) for day, files in files_by_day(table).items()}
    assert max(small_files.values()) > 5

    # A dry run says what it would do and commits nothing.
    planned = compact_raw_tables(settings, dry_run=True, now=LATER, progress=lambda _: None)
    assert {(r.day, r.files_before) for r in planned} == set(small_files.items())
    table.refresh()
    assert table.current_snapshot() == before_snapshot

    # An ingest batch whose commit loses to a compaction commits again on top of it.
    produce_events(settings, events[half : half + 20])
    plan = plan_next_batch(settings, TOPIC)
    assert plan is not None
    landed = land_batch(
        settings, plan, before_commit=lambda: compact_table(settings, table, LATER, progress=lambda _: None)
    )
    assert landed.rows_landed == 20

    # A compaction whose commit loses to an ingest batch commits again, leaving the batch's file alone.
    stale = ensure_raw_table(catalog, settings, USER_VISIT)
    stale_groups = plan_compaction(stale, 1024 * 1024, LATER.date())
    assert stale_groups  # the batch above added a small file to compacted days
    produce_events(settings, events[half + 20 : half + 40])
    assert _land_all(settings) == 1
    rewrite_group(stale, stale_groups[0], 1024 * 1024, "compact")

    # Compaction in a thread, over and over, while the rest of the events land batch by batch.
    produce_events(settings, events[half + 40 :])
    stop = threading.Event()
    compactions: list[int] = []
    failures: list[BaseException] = []

    def compact_until_stopped() -> None:
        own = ensure_raw_table(load_catalog(settings), settings, USER_VISIT)
        while not stop.is_set():
            try:
                compactions.append(len(compact_table(settings, own, LATER, progress=lambda _: None)))
            except BaseException as error:  # noqa: BLE001 (reported by the test thread)
                failures.append(error)
                return
            own.refresh()
            stop.wait(0.05)  # pacing: each round re-plans from the table's manifests

    compactor = threading.Thread(target=compact_until_stopped)
    compactor.start()
    try:
        _land_all(settings)
    finally:
        stop.set()
        compactor.join()
    assert not failures, failures
    assert sum(compactions) > 0
    compact_table(settings, table, LATER, progress=lambda _: None)

    rows = _all_rows(settings)
    ids = rows.column("event_id").to_pylist()
    assert ids == expected_ids  # every event exactly once
    table.refresh()
    assert set(small_files) <= files_by_day(table).keys()
    assert all(len(files) == 1 for files in files_by_day(table).values())
    assert plan_next_batch(settings, TOPIC) is None  # the offsets still say everything landed

    # The rows of the first half are the same values, whatever files they are in now.
    first_half = rows.filter(pc.is_in(rows.column("event_id"), before_rows.column("event_id")))
    assert first_half.equals(before_rows)
    assert checksum(first_half) == checksum(before_rows)

    # Compaction snapshots carry the newest offsets, so expiring history down to them keeps them.
    compacted = [s for s in table.snapshots() if MAINTENANCE_KEY in properties(s)]
    assert compacted and all(NEXT_OFFSETS_KEY in properties(s) for s in compacted)
    assert sum(stored_offsets(table, TOPIC).next_offsets.values()) == len(events)  # a fresh topic: from 0


def test_compaction_keeps_offsets_lineage_and_touched_days(broker: Settings) -> None:
    events = [e for e in generate_events(1_000, seed=22, days=2) if e["event_type"] == "user_visit"]
    produce_events(broker, events)
    settings = broker.model_copy(update={"batch_max_events": 50, "raw_snapshots_kept": 2, "compact_target_mb": 1})
    assert _land_all(settings) > 3
    catalog = load_catalog(settings)
    table = ensure_raw_table(catalog, settings, USER_VISIT)
    offsets = stored_offsets(table, TOPIC)
    last_ingest = table.current_snapshot()
    assert last_ingest is not None
    rows_before = _all_rows(settings)

    # The command's dry run names each day's group and commits nothing.
    dry_run = CliRunner().invoke(app, ["maintain", "compact", "--dry-run"])
    assert dry_run.exit_code == 0, dry_run.output
    for day, files in files_by_day(table).items():
        assert f"raw.user_visit {day}: would compact {len(files)} files" in dry_run.output
    assert ensure_raw_table(catalog, settings, USER_VISIT).current_snapshot() == last_ingest

    rewrites = compact_table(settings, table, LATER, progress=lambda _: None)
    assert len(rewrites) >= 2  # at least one group per day, each its own snapshot
    for rewrite in rewrites:
        group = rows_before.filter(
            pc.equal(pc.cast(rows_before.column("event_at"), pa.date32()), pa.scalar(rewrite.day))
        )
        assert rewrite.rows == group.num_rows and rewrite.files_after == 1
    assert sum(r.rows for r in rewrites) == rows_before.num_rows
    assert _all_rows(settings).equals(rows_before)

    # The latest snapshot's offsets are those of the last batch; history expired down to compactions keeps them.
    current = table.current_snapshot()
    assert current is not None and properties(current)[MAINTENANCE_KEY] == "compact"
    assert carried_offsets(table)[NEXT_OFFSETS_KEY] == properties(last_ingest)[NEXT_OFFSETS_KEY]
    # Only compaction since the last ingest: no event day was touched (the live follower rebuilds nothing).
    assert event_times_since(table, last_ingest.snapshot_id) is None
    expire_old_snapshots(table, 1, lambda expiring: record_before_expiry(catalog, settings, table, expiring))
    stored = stored_offsets(table, TOPIC)
    assert (stored.next_offsets, stored.fingerprints) == (offsets.next_offsets, offsets.fingerprints)
    assert plan_next_batch(settings, TOPIC) is None
    # Once the last ingest snapshot is expired, its recorded ingest time still says nothing landed since.
    assert table.snapshot_by_id(last_ingest.snapshot_id) is None
    assert event_times_since(table, last_ingest.snapshot_id) == _event_times(rows_before)  # unknown: every row
    expired = functools.partial(recorded_ingested_at, catalog, settings, table)
    assert event_times_since(table, last_ingest.snapshot_id, expired) is None

    # Lineage: every row still finds the batch (and run) that landed it, none the compaction.
    with lake_connection(settings) as lake:
        found = landings(lake, catalog, settings, table, set(rows_before.column("ingested_at").to_pylist()))
    assert found.keys() == set(rows_before.column("ingested_at").to_pylist())
    compactions = {s.snapshot_id for s in table.snapshots() if MAINTENANCE_KEY in properties(s)}
    assert not {landing.snapshot_id for landing in found.values()} & compactions
    assert {landing.run_id for landing in found.values()} == {"run-0"}

    # Nothing small is left: a second run has nothing to do.
    assert compact_table(settings, table, LATER, progress=lambda _: None) == []


def test_manifests_per_snapshot_stay_bounded() -> None:
    """The commit crept because each fast append added a manifest whose list every later commit read and
    rewrote, and each commit deep-copies the metadata listing every kept snapshot and the previous metadata
    files (bench/profile_commit.py). Merged and expired, a snapshot holds a bounded number of manifests and
    the metadata a bounded number of snapshots and of metadata files, however many commits came before."""
    settings = get_settings().model_copy(update={"raw_snapshots_kept": 3})
    catalog = load_catalog(settings)
    table = ensure_raw_table(catalog, settings, USER_VISIT)
    with table.transaction() as transaction:  # as a table created before manifests were merged
        transaction.remove_properties(*MANIFEST_MERGE_PROPERTIES, *SHORT_METADATA_LOG_PROPERTIES)
    assert "commit.manifest-merge.enabled" not in table.properties
    table = ensure_raw_table(catalog, settings, USER_VISIT)  # an existing table gets the new properties
    assert (MANIFEST_MERGE_PROPERTIES | SHORT_METADATA_LOG_PROPERTIES).items() <= table.properties.items()
    assert table.properties["commit.retry.num-retries"] == "0"

    merge_count = 5  # the platform's count (MANIFEST_MERGE_PROPERTIES) merges every 50 commits: too slow here
    with table.transaction() as transaction:
        transaction.set_properties({"commit.manifest.min-count-to-merge": str(merge_count)})
    schema = table.schema().as_arrow()
    manifests, snapshots, metadata_files = [], [], []
    for index in range(4 * merge_count):
        row = {
            "event_id": f"e{index}",
            "event_type": "user_visit",
            "event_at": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=index),
            "source": "web",
            "user_id": "u1",
            "session_id": "s1",
            "correlation_id": f"c{index}",
            "schema_version": 1,
            "payload": None,
            "ingested_at": datetime.now(UTC),
            "kafka_topic": TOPIC,
            "kafka_partition": 0,
            "kafka_offset": index,
        }
        table.append(pa.Table.from_pylist([row], schema=schema))
        expire_old_snapshots(table, settings.raw_snapshots_kept)
        snapshot = table.current_snapshot()
        assert snapshot is not None
        manifests.append(len(snapshot.manifests(table.io)))
        snapshots.append(len(table.snapshots()))
        metadata_files.append(len(table.metadata.metadata_log))
    assert max(manifests) <= merge_count and manifests.count(1) >= 3  # merged into one, again and again
    assert max(snapshots) <= 2 * settings.raw_snapshots_kept
    assert metadata_files[-1] == max(metadata_files) == 10  # the metadata lists the last 10 metadata files only
    assert table.scan().to_arrow().num_rows == 4 * merge_count
