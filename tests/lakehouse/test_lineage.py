"""A raw row's snapshot and run stay known after snapshot history is expired, and a read pinned to an
expired snapshot still returns exactly what that snapshot held (real broker, Iceberg and DuckDB)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import duckdb
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import land_batch
from analytics_platform.ingest.plan import plan_next_batch
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.lineage import landings
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.serving.events import events_behind_row, events_by_correlation_id, lake_connection
from analytics_platform.serving.metrics import Scope
from analytics_platform.serving.replays import DaysReplay, launch_plan
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import generate_events
from analytics_platform.warehouse import builds
from analytics_platform.warehouse.connections import duckdb_config
from tests.helpers import produce_events

pytestmark = pytest.mark.integration

TOPIC = "events.user_visit"


def test_lineage_outlives_snapshot_expiry(broker: Settings) -> None:
    events = [e for e in generate_events(2_000, seed=11) if e["event_type"] == "user_visit"]
    produce_events(broker, events)
    settings = broker.model_copy(update={"batch_max_events": 60, "raw_snapshots_kept": 3})
    batches = []  # (plan, run id, snapshot id) of every commit, in order
    while (plan := plan_next_batch(settings, TOPIC)) is not None:
        run_id = f"run-{len(batches)}"
        result = land_batch(settings, plan, run_id=run_id)
        batches.append((plan, run_id, result.snapshot_id))
    assert len(batches) > 10  # history was expired several times

    catalog = load_catalog(settings)
    table = ensure_raw_table(catalog, settings, event_types()["user_visit"])
    assert len(table.snapshots()) <= 6
    rows = table.scan(
        selected_fields=("event_id", "event_at", "correlation_id", "kafka_partition", "kafka_offset", "ingested_at")
    ).to_arrow()
    assert rows.num_rows == len(events)

    def batch_of(partition: int, offset: int) -> int:
        (index,) = [
            i
            for i, (plan, _, _) in enumerate(batches)
            if plan.ranges.get(partition, (0, 0))[0] <= offset < plan.ranges.get(partition, (0, 0))[1]
        ]
        return index

    expected = {
        row["event_id"]: batches[batch_of(row["kafka_partition"], row["kafka_offset"])] for row in rows.to_pylist()
    }
    kept = {snapshot.snapshot_id for snapshot in table.snapshots()}
    with lake_connection(settings) as lake:
        found = landings(lake, catalog, settings, table, set(rows.column("ingested_at").to_pylist()))
        for row in rows.to_pylist():
            _, run_id, snapshot_id = expected[row["event_id"]]
            landing = found[row["ingested_at"]]
            assert (landing.snapshot_id, landing.run_id, landing.kept) == (snapshot_id, run_id, snapshot_id in kept)
        still_kept = len(kept & {snapshot_id for _, _, snapshot_id in batches})
        assert Counter(landing.kept for landing in found.values()) == {
            True: still_kept,
            False: len(batches) - still_kept,
        }

        # The drill-down names the run of an event whose snapshot is long gone.
        oldest = [row for row in rows.to_pylist() if expected[row["event_id"]] == batches[0]]
        drill = events_by_correlation_id(lake, catalog, settings, oldest[0]["correlation_id"], Scope(), None)
        (event,) = [e for e in drill.events if e["event_id"] == oldest[0]["event_id"]]
        assert event["landed_by"]["run_id"] == "run-0" and event["landed_by"]["snapshot_kept"] is False
        assert event["landed_by"]["snapshot_id"] == str(batches[0][2])

        # A page pinned to an expired snapshot reads what that snapshot held: the first batches' rows.
        pinned_index = 2
        pinned = batches[pinned_index][2]
        assert pinned not in kept
        hour = min(rows.column("event_at").to_pylist()).replace(minute=0, second=0, microsecond=0)
        within = {
            row["event_id"]
            for row in rows.to_pylist()
            if hour <= row["event_at"] < hour + timedelta(hours=1)
            and batch_of(row["kafka_partition"], row["kafka_offset"]) <= pinned_index
        }
        assert within
        page = events_behind_row(
            lake,
            catalog,
            settings,
            "events_per_hour",
            [hour.isoformat(), "user_visit"],
            10_000,
            pinned={"user_visit": pinned},
        )
        assert sorted(e["event_id"] for e in page.events) == sorted(within)
        assert page.snapshots == {"user_visit": pinned}

    # A day rebuild "as of" an expired snapshot reads raw up to that snapshot's ingest time.
    (first_ingested,) = {row["ingested_at"] for row in rows.to_pylist() if expected[row["event_id"]] == batches[0]}
    day = first_ingested.date()
    checkpoint = DaysReplay(kind="days", first=day, last=day, as_of_snapshot=batches[0][2])
    (op,) = launch_plan(settings, checkpoint, 1).run_config["ops"].values()
    assert op["config"]["raw_as_of"] == first_ingested.isoformat()


def test_a_build_sees_every_commit_in_its_snapshot_views(broker: Settings) -> None:
    """``raw.table_snapshots`` (kept) and ``raw.ingest_snapshots`` (expired) of a build hold every commit with
    its run: what the operations model ``ops_ingest_runs`` reads."""
    events = [e for e in generate_events(1_000, seed=12) if e["event_type"] == "user_visit"]
    produce_events(broker, events)
    settings = broker.model_copy(update={"batch_max_events": 60, "raw_snapshots_kept": 3})
    commits: dict[int | None, str] = {}
    while (plan := plan_next_batch(settings, TOPIC)) is not None:
        result = land_batch(settings, plan, run_id=f"run-{len(commits)}")
        commits[result.snapshot_id] = f"run-{len(commits)}"
    catalog = load_catalog(settings)
    kept = {s.snapshot_id for s in ensure_raw_table(catalog, settings, event_types()["user_visit"]).snapshots()}
    assert len(commits) > 6 and kept < commits.keys()  # some expired, some kept

    with builds.build_lock(settings):
        build = builds.prepare_build(settings, catalog)
    with duckdb.connect(str(build), config=duckdb_config(settings)) as con:
        con.execute("load iceberg")
        listed = con.execute(
            "select snapshot_id, summary ->> '$.\"ingest.run-id\"', 'kept' from raw.table_snapshots "
            "where table_name = 'user_visit' "
            "union all select snapshot_id, run_id, 'expired' from raw.ingest_snapshots "
            "where table_name = 'raw.user_visit'"
        ).fetchall()
        (added,) = con.execute(
            "select sum((summary ->> '$.\"added-records\"')::bigint) from ("
            "select distinct on (snapshot_id) snapshot_id, summary from ("
            "select snapshot_id, summary from raw.table_snapshots where table_name = 'user_visit' union all "
            "select snapshot_id, summary from raw.ingest_snapshots where table_name = 'raw.user_visit'))"
        ).fetchone() or (None,)
    assert added == len(events)
    assert {(snapshot_id, run_id) for snapshot_id, run_id, _ in listed} == set(commits.items())
    assert {snapshot_id for snapshot_id, _, where in listed if where == "kept"} == kept
