"""Partition groups landing one topic at once (PLATFORM_INGEST_WORKERS_PER_TOPIC), against the real broker
and real Iceberg tables: every event exactly once, including when one group's worker is SIGKILLed in the
middle of a batch and its work is retried while the other groups go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import BatchResult, land_batch, land_run
from analytics_platform.ingest.plan import PartitionGroup, partition_groups, plan_next_batch, plan_next_run
from analytics_platform.kafka.reader import log_bounds
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import START_OFFSETS_KEY, stored_offsets
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, properties
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.settings import Settings, get_settings
from tests.helpers import counts_by_type, event_ids, produce, wait_for

pytestmark = pytest.mark.integration

VISITS = event_types()["user_visit"]
TOPIC = VISITS.topic
PARTITIONS = 6
BATCH = 150  # small micro-batches: many commits per group, so the groups' commits meet


@pytest.fixture
def six_partitions(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The ``broker`` fixture with event topics of PARTITIONS partitions and small micro-batches, and the
    raw table created."""
    monkeypatch.setenv("PLATFORM_TOPIC_PARTITIONS", str(PARTITIONS))
    monkeypatch.setenv("PLATFORM_BATCH_MAX_EVENTS", str(BATCH))
    settings = request.getfixturevalue("broker")
    assert settings.topic_partitions == PARTITIONS
    # The catalog and the table exist before the groups start, as in a deployment: the embedded SQLite
    # catalog creating its own tables is not safe from several threads at once.
    ensure_raw_table(load_catalog(settings), settings, VISITS)
    yield settings


def land_group(settings: Settings, group: PartitionGroup) -> list[BatchResult]:
    """What a group's sensor and runs do, without Dagster: plan the group's next run, land it, until caught up."""
    results: list[BatchResult] = []
    while (plan := plan_next_run(settings, TOPIC, group=group)) is not None:
        assert all(group.owns(p) for p in plan.ranges), plan
        results.extend(land_run(settings, plan, group=group))
    return results


def land_groups_at_once(settings: Settings, groups: list[PartitionGroup]) -> dict[str, list[BatchResult]]:
    """Each group in a thread of its own, started together; re-raises the first group's error."""
    results: dict[str, list[BatchResult]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(groups))

    def worker(group: PartitionGroup) -> None:
        try:
            start.wait()
            results[group.label] = land_group(settings, group)
        except BaseException as error:  # surfaced in the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(group,)) for group in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    return results


def assert_exactly_once(settings: Settings, produced: list[dict]) -> None:
    """Exactly the produced events, none twice; the final snapshot's offsets are the log ends and every
    partition's rows are offsets 0..end-1 without gap or duplicate."""
    expected = sorted(e["event_id"] for e in produced if e["event_type"] == VISITS.name)
    ids = event_ids(settings, VISITS.name)
    assert len(ids) == len(set(ids)) == len(expected) == counts_by_type(produced)[VISITS.name]
    assert sorted(ids) == expected
    table = ensure_raw_table(load_catalog(settings), settings, VISITS)
    stored = stored_offsets(table, TOPIC)
    assert stored.snapshot_id == table.current_snapshot().snapshot_id
    ends = {p: bounds.end for p, bounds in log_bounds(settings, TOPIC).items()}
    assert len(ends) == PARTITIONS and stored.next_offsets == ends
    rows = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow().to_pylist()
    for partition, end in ends.items():
        assert sorted(r["kafka_offset"] for r in rows if r["kafka_partition"] == partition) == list(range(end))


def assert_ingest_time_follows_commit_order(settings: Settings) -> None:
    """Rows ingested after a snapshot are the rows committed after it (lineage and "days touched since")."""
    table = ensure_raw_table(load_catalog(settings), settings, VISITS)
    stamps = [
        properties(s)[INGESTED_AT_KEY]
        for s in sorted(table.snapshots(), key=lambda s: s.sequence_number or 0)
        if INGESTED_AT_KEY in properties(s)
    ]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("groups", [2, 3])
def test_groups_landing_one_topic_at_once_land_every_event_once(
    backend: str, groups: int, request: pytest.FixtureRequest
) -> None:
    settings = request.getfixturevalue("six_partitions")  # after ``backend``: its settings see the catalog
    produced = produce(settings, 8_000, seed=groups)
    results = land_groups_at_once(settings, partition_groups(groups))

    assert set(results) == {g.label for g in partition_groups(groups)}
    assert all(r.rows_landed for batches in results.values() for r in batches)
    assert_exactly_once(settings, produced)
    assert_ingest_time_follows_commit_order(settings)


def test_a_group_that_lost_its_commit_to_another_group_lands_on_top_of_it(six_partitions: Settings) -> None:
    """The conflict made deterministic: group 1 commits while group 0 is between its read and its commit."""
    settings = six_partitions
    produced = produce(settings, 3_000, seed=11)
    group_0, group_1 = partition_groups(2)
    plan_0 = plan_next_batch(settings, TOPIC, group=group_0)
    plan_1 = plan_next_batch(settings, TOPIC, group=group_1)
    assert plan_0 is not None and plan_1 is not None and not set(plan_0.ranges) & set(plan_1.ranges)

    result = land_batch(settings, plan_0, before_commit=lambda: land_batch(settings, plan_1))

    assert result.commit_attempts == 2
    table = ensure_raw_table(load_catalog(settings), settings, VISITS)
    stored = stored_offsets(table, TOPIC)
    ends = {p: end for plan in (plan_0, plan_1) for p, (_, end) in plan.ranges.items()}
    assert stored.next_offsets == ends  # group 1's offsets carried into group 0's snapshot
    summary = properties(table.current_snapshot())
    assert {int(p) for p in json.loads(summary[START_OFFSETS_KEY])} == set(plan_0.ranges)  # which it landed
    # Its rows carry the ingest time of the snapshot that finally committed them, not of the lost attempt.
    rows = table.scan(selected_fields=("kafka_partition", "ingested_at")).to_arrow().to_pylist()
    stamps = {r["ingested_at"].isoformat() for r in rows if r["kafka_partition"] in plan_0.ranges}
    assert stamps == {summary[INGESTED_AT_KEY]}
    land_groups_at_once(settings, partition_groups(2))
    assert_exactly_once(settings, produced)


# Lands the first micro-batch of its group, then reads and decodes the second and stops before committing
# it (writing a marker): the test SIGKILLs it there, as a run's worker dies mid-batch.
KILLED_WORKER = """
import signal, sys
from pathlib import Path
from analytics_platform.ingest.land import land_batch
from analytics_platform.ingest.plan import PartitionGroup, plan_next_batch
from analytics_platform.settings import get_settings

settings = get_settings()
group = PartitionGroup(int(sys.argv[1]), int(sys.argv[2]))
first = plan_next_batch(settings, sys.argv[3], group=group)
land_batch(settings, first)
second = plan_next_batch(settings, sys.argv[3], group=group)

def hang() -> None:
    Path(sys.argv[4]).write_text(second.run_key)
    signal.pause()

land_batch(settings, second, before_commit=hang)
"""


@pytest.mark.parametrize("groups", [2, 3])
def test_a_group_killed_mid_batch_is_retried_while_the_others_land(
    six_partitions: Settings, groups: int, tmp_path: Path
) -> None:
    settings = six_partitions
    produced = produce(settings, 8_000, seed=20 + groups)
    killed, *others = partition_groups(groups)
    marker = tmp_path / "read-and-decoded"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, str(killed.index), str(groups), TOPIC, str(marker)],
        env=dict(os.environ),
        cwd=Path(__file__).resolve().parents[2],
    )
    with ThreadPoolExecutor(max_workers=1) as background:
        try:
            wait_for(lambda: marker.exists() or worker.poll() is not None, 120, "the worker's second batch", 0.05)
            assert worker.poll() is None, f"the worker exited with {worker.returncode} before its second commit"
            # The other groups land while the killed group's batch is in flight, and go on after.
            others_landing = background.submit(land_groups_at_once, settings, others)
            os.kill(worker.pid, signal.SIGKILL)
            assert worker.wait(30) == -signal.SIGKILL
        finally:
            if worker.poll() is None:
                worker.kill()
        table = ensure_raw_table(load_catalog(settings), settings, VISITS)
        landed_by_killed = {p: o for p, o in stored_offsets(table, TOPIC).next_offsets.items() if killed.owns(p)}
        assert sum(landed_by_killed.values()) == BATCH  # its first micro-batch, not the one it was killed in

        retried = land_group(get_settings(), killed)  # its retry: re-planned from its partitions' stored offsets
        others_landing.result(300)
    assert sum(r.rows_landed for r in retried) > 0
    assert_exactly_once(settings, produced)
    assert_ingest_time_follows_commit_order(settings)
