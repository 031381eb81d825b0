"""Retention deletes exactly the days past it, cold days stay readable, unreferenced files go only after the
grace period, and every dry run changes nothing (real Iceberg SQL catalog and DuckDB)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.maintenance.jobs import apply_raw_retention_job
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.compaction import compact_table, files_by_day
from analytics_platform.lakehouse.expiry import expire_and_clean, read_pending
from analytics_platform.lakehouse.maintenance import MAINTENANCE_KEY, cold_data_path
from analytics_platform.lakehouse.offsets import offsets_properties, stored_offsets
from analytics_platform.lakehouse.retention import apply_retention
from analytics_platform.lakehouse.snapshots import properties
from analytics_platform.lakehouse.tables import (
    ensure_dead_letter_table,
    ensure_raw_table,
    ensure_replays_table,
    read_dead_letters,
)
from analytics_platform.serving.events import lake_connection
from analytics_platform.settings import Settings, get_settings
from analytics_platform.warehouse.connections import BUILD_FILE

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"
PURCHASE = event_types()["purchase"]
NOW = datetime(2026, 12, 20, 12, tzinfo=UTC)
TODAY = NOW.date()
DAYS = [TODAY - timedelta(days=ago) for ago in range(8)]  # today and the seven days before
ROWS_PER_BATCH = 5
BATCHES_PER_DAY = 2


def _quiet(_: str) -> None:
    pass


def _land(settings: Settings, today: date = TODAY) -> pa.Table:
    """Two batches of five purchases on each of the eight days up to ``today``, each batch committed with
    its offsets, as ingestion commits them; returns every row."""
    table = ensure_raw_table(load_catalog(settings), settings, PURCHASE)
    schema = table.schema().as_arrow()
    offset = 0
    for batch in range(BATCHES_PER_DAY):
        for day in (today - timedelta(days=ago) for ago in range(len(DAYS))):
            rows = []
            for index in range(ROWS_PER_BATCH):
                rows.append(
                    {
                        "event_id": f"{day}-{batch}-{index}",
                        "event_type": "purchase",
                        "event_at": datetime.combine(day, time(batch, index), UTC),
                        "source": "web",
                        "user_id": f"u{index}",
                        "session_id": f"s{batch}",
                        "correlation_id": f"c{day}-{batch}-{index}",
                        "schema_version": 1,
                        "payload": None,
                        "ingested_at": datetime.combine(day, time(batch, index, 30), UTC),
                        "kafka_topic": TOPIC,
                        "kafka_partition": 0,
                        "kafka_offset": offset + index,
                    }
                )
            offset += ROWS_PER_BATCH
            summary = offsets_properties(TOPIC, {0: offset - ROWS_PER_BATCH}, {0: offset}, {0: "f"})
            table.append(pa.Table.from_pylist(rows, schema=schema), snapshot_properties=summary)
    return table.scan().to_arrow()


def _days(rows: pa.Table) -> dict[date, int]:
    days: dict[date, int] = {}
    for event_at in rows.column("event_at").to_pylist():
        days[event_at.date()] = days.get(event_at.date(), 0) + 1
    return days


def test_retention_deletes_exactly_the_days_past_it_and_cold_days_stay_readable() -> None:
    settings = get_settings().model_copy(update={"raw_retention_days": 5, "raw_hot_days": 2})
    all_rows = _land(settings)
    catalog = load_catalog(settings)
    table = ensure_raw_table(catalog, settings, PURCHASE)
    offsets = stored_offsets(table, TOPIC)
    deleted_days = {day for day in DAYS if day < TODAY - timedelta(days=5)}
    cold_days = {day for day in DAYS if TODAY - timedelta(days=5) <= day < TODAY - timedelta(days=2)}
    assert (len(deleted_days), len(cold_days)) == (2, 3)

    # Dry run: the exact days, and nothing changes.
    location = table.metadata_location
    planned = apply_retention(settings, dry_run=True, now=NOW, progress=_quiet)
    assert {drop.day for drop in planned.dropped} == deleted_days
    assert {(m.day, m.files_before, m.rows) for m in planned.moved} == {
        (day, BATCHES_PER_DAY, BATCHES_PER_DAY * ROWS_PER_BATCH) for day in cold_days
    }
    table.refresh()
    assert table.metadata_location == location

    report = apply_retention(settings, now=NOW, progress=_quiet)
    assert {(drop.day, drop.rows) for drop in report.dropped} == {
        (day, BATCHES_PER_DAY * ROWS_PER_BATCH) for day in deleted_days
    }
    table.refresh()
    kept = table.scan().to_arrow()
    first_kept = pa.scalar(datetime.combine(TODAY - timedelta(days=5), time(), UTC), pa.timestamp("us", "UTC"))
    expected = all_rows.filter(pc.greater_equal(all_rows.column("event_at"), first_kept))
    assert kept.sort_by("event_id").equals(expected.sort_by("event_id"))
    assert set(_days(kept)) == set(DAYS) - deleted_days

    # Cold days: one compacted file each under the cold location; hot days untouched.
    cold = cold_data_path(settings, table)
    files = files_by_day(table)
    for day in cold_days:
        assert [f.file_path.startswith(cold + "/") for f in files[day]] == [True]
    for day in set(DAYS) - deleted_days - cold_days:
        assert len(files[day]) == BATCHES_PER_DAY and not any(f.file_path.startswith(cold) for f in files[day])

    # Still queryable as the same table: DuckDB reads the cold days from the current metadata.
    with lake_connection(settings) as lake:
        per_day = lake.execute(
            "select event_at::date, count(*) from iceberg_scan(?) group by 1", [table.metadata_location]
        ).fetchall()
    assert dict(per_day) == _days(expected)

    # The maintenance snapshots carry the offsets; a second run has nothing left to do.
    assert all(MAINTENANCE_KEY in properties(s) for s in table.snapshots()[-5:])
    assert stored_offsets(table, TOPIC).next_offsets == offsets.next_offsets
    again = apply_retention(settings, now=NOW, progress=_quiet)
    assert (again.dropped, again.moved) == ([], [])


def test_dead_letters_have_their_own_retention_and_defaults_change_nothing() -> None:
    settings = get_settings()
    catalog = load_catalog(settings)
    dead_letters, replays = ensure_dead_letter_table(catalog, settings), ensure_replays_table(catalog, settings)
    for ago in range(5):
        at = datetime.combine(TODAY - timedelta(days=ago), time(12), UTC)
        dead_letters.append(
            pa.Table.from_pylist(
                [
                    {
                        "kafka_topic": TOPIC,
                        "kafka_partition": 0,
                        "kafka_offset": ago,
                        "kafka_key": None,
                        "raw_value": b"{}",
                        "reason": "bad",
                        "failed_checks": ["decode"],
                        "schema_version": None,
                        "ingested_at": at,
                    }
                ],
                schema=dead_letters.schema().as_arrow(),
            )
        )
        replays.append(
            pa.Table.from_pylist(
                [
                    {
                        "kafka_topic": TOPIC,
                        "kafka_partition": 0,
                        "kafka_offset": ago,
                        "replay_id": "r",
                        "landed_in": "raw.purchase",
                        "replayed_at": at,
                    }
                ],
                schema=replays.schema().as_arrow(),
            )
        )
    raw_rows = _land(settings).num_rows

    off = apply_retention(settings, now=NOW, progress=_quiet)  # the defaults: everything off
    assert (off.dropped, off.moved) == ([], [])

    report = apply_retention(settings.model_copy(update={"dead_letter_retention_days": 2}), now=NOW, progress=_quiet)
    assert sorted((drop.table, drop.day) for drop in report.dropped) == sorted(
        (f"raw.{name}", TODAY - timedelta(days=ago))
        for name in ("dead_letter", "dead_letter_replays")
        for ago in (3, 4)
    )
    left = read_dead_letters(catalog, settings, selected_fields=("kafka_offset",))
    assert sorted(left.column("kafka_offset").to_pylist()) == [0, 1, 2]
    assert ensure_raw_table(catalog, settings, PURCHASE).scan().to_arrow().num_rows == raw_rows


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_unreferenced_files_are_deleted_only_after_the_grace_period() -> None:
    settings = get_settings().model_copy(
        update={"orphan_grace_hours": 1.0, "compact_target_mb": 1, "raw_snapshots_kept": 1}
    )
    rows = _land(settings)
    catalog = load_catalog(settings)
    table = ensure_raw_table(catalog, settings, PURCHASE)
    small = {f.file_path for files in files_by_day(table).values() for f in files}
    pinned_location = table.metadata_location
    compact_table(settings, table, NOW + timedelta(days=1), progress=_quiet)
    table.refresh()
    live = {f.file_path for files in files_by_day(table).values() for f in files}
    assert not live & small and len(live) == len(DAYS)

    # A build still pins the metadata from before compaction: its files are protected however old.
    build = settings.duckdb_path / "builds" / "20261220T000000-test" / BUILD_FILE
    build.parent.mkdir(parents=True)
    with duckdb.connect(str(build)) as con:
        con.execute("create schema raw")
        con.execute(f"create view raw.purchase as select * from read_text('{pinned_location}')")

    # A leftover of a failed write.
    orphan = _local(table.location()) / "data" / "event_day=2026-12-20" / "failed-write.parquet"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"not referenced")
    seen = datetime.now(UTC)

    first = expire_and_clean(settings, now=seen, progress=_quiet)
    (purchase,) = [c for c in first if c.table == "raw.purchase"]
    assert purchase.deleted == [] and purchase.unreferenced >= 1
    assert str(orphan) in read_pending(table)

    dry = expire_and_clean(settings, dry_run=True, now=seen + timedelta(hours=2), progress=_quiet)
    (would,) = [c for c in dry if c.table == "raw.purchase"]
    assert f"file://{orphan}" in would.deleted and orphan.exists()

    # Past the grace period: the orphan goes, the pinned build's files stay; then without the build, they go.
    later = seen + timedelta(hours=2)
    second = expire_and_clean(settings, now=later, progress=_quiet)
    (purchase,) = [c for c in second if c.table == "raw.purchase"]
    assert f"file://{orphan}" in purchase.deleted and not orphan.exists()
    assert all(_local(path).exists() for path in small)
    build.unlink()
    expire_and_clean(settings, now=later, progress=_quiet)  # first seen unreferenced now
    third = expire_and_clean(settings, now=later + timedelta(hours=2), progress=_quiet)
    (purchase,) = [c for c in third if c.table == "raw.purchase"]
    assert {f"file://{_local(path)}" for path in small} <= set(purchase.deleted)
    assert not any(_local(path).exists() for path in small)
    assert all(_local(path).exists() for path in live)

    # What the table holds is unchanged throughout.
    table.refresh()
    assert table.scan().to_arrow().sort_by("event_id").equals(rows.sort_by("event_id"))


def test_the_scheduled_job_says_what_it_would_do_then_does_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_RAW_RETENTION_DAYS", "5")
    settings = get_settings()
    today = datetime.now(UTC).date()
    rows = _land(settings, today)
    table = ensure_raw_table(load_catalog(settings), settings, PURCHASE)
    location = table.metadata_location

    def run(dry_run: bool) -> dict[str, object]:
        result = apply_raw_retention_job.execute_in_process(
            run_config={"ops": {"apply_raw_retention_op": {"config": {"dry_run": dry_run}}}},
            resources={"platform": PlatformResource()},
        )
        assert result.success
        (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
        return {k: v.value for k, v in output.event_specific_data.metadata.items()}  # type: ignore[union-attr]

    assert run(dry_run=True) == {"dry_run": True, "days_moved_cold": 0, "days_deleted": 2, "rows_deleted": 20}
    table.refresh()
    assert table.metadata_location == location
    assert run(dry_run=False)["days_deleted"] == 2
    table.refresh()
    first_kept = today - timedelta(days=5)
    assert table.scan().to_arrow().num_rows == sum(
        1 for at in rows.column("event_at").to_pylist() if at.date() >= first_kept
    )
