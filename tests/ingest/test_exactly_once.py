"""Exactly-once ingestion against the real broker and real Iceberg tables (SQLite and PostgreSQL catalogs)."""

from __future__ import annotations

import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import ConcurrentIngestError, OffsetMismatchError
from analytics_platform.ingest.land import ingest_until_caught_up, land_batch, land_run
from analytics_platform.ingest.plan import plan_next_batch, plan_next_run
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.reader import log_bounds
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import reset_offsets, stored_offsets
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import generate_events
from tests.helpers import counts_by_type, event_ids, produce, produce_events

pytestmark = pytest.mark.integration

TOPIC = "events.user_visit"


class InjectedCrash(RuntimeError):
    pass


def crash() -> None:
    raise InjectedCrash("killed after the batch was read, before the Iceberg commit")


def log_ends(settings: Settings, topic: str) -> dict[int, int]:
    return {p: bounds.end for p, bounds in log_bounds(settings, topic).items()}


def current_snapshot_id(settings: Settings, event_type: str = "user_visit") -> int | None:
    snapshot = ensure_raw_table(load_catalog(settings), settings, event_types()[event_type]).current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def test_crash_before_commit_then_retry_lands_every_event_once(backend: str, broker: Settings) -> None:
    events = produce(broker, 3_000)
    expected = counts_by_type(events)["user_visit"]
    plan = plan_next_batch(broker, TOPIC)
    assert plan is not None and plan.size == expected

    with pytest.raises(InjectedCrash):
        land_batch(broker, plan, before_commit=crash)
    assert event_ids(broker, "user_visit") == []  # nothing half-written
    assert plan_next_batch(broker, TOPIC) == plan  # the retry re-plans the very same range

    result = land_batch(broker, plan)
    ids = event_ids(broker, "user_visit")
    assert result.rows_landed == expected == len(ids) == len(set(ids))
    assert sorted(ids) == sorted(e["event_id"] for e in events if e["event_type"] == "user_visit")


def test_a_run_crashing_between_micro_batches_resumes_after_the_last_commit(backend: str, broker: Settings) -> None:
    events = produce(broker, 3_000)
    expected = sorted(e["event_id"] for e in events if e["event_type"] == "user_visit")
    settings = broker.model_copy(update={"batch_max_events": 500})
    plan = plan_next_run(settings, TOPIC)
    assert plan is not None and plan.size == len(expected)  # the whole backlog is one run

    def crash_after_second(batch: object) -> None:
        landed.append(batch)
        if len(landed) == 2:
            raise InjectedCrash("killed after the run's second micro-batch committed")

    landed: list[object] = []
    with pytest.raises(InjectedCrash):
        land_run(settings, plan, on_batch=crash_after_second)
    assert len(event_ids(settings, "user_visit")) == 1_000  # two committed micro-batches of 500

    retried = land_run(settings, plan)  # the same run's retry
    assert all(batch.rows_landed <= 500 for batch in retried)
    assert sum(batch.rows_landed for batch in retried) == len(expected) - 1_000
    assert sorted(event_ids(settings, "user_visit")) == expected
    assert land_run(settings, plan) == []  # a late retry of a landed run is a no-op


def test_a_following_run_lands_what_arrives_after_its_range(backend: str, broker: Settings) -> None:
    first = [e for e in generate_events(3_000, seed=5) if e["event_type"] == "user_visit"]
    later = [e for e in generate_events(3_000, seed=6) if e["event_type"] == "user_visit"]
    produce_events(broker, first)
    settings = broker.model_copy(update={"ingest_poll_s": 0.2})
    plan = plan_next_run(settings, TOPIC)
    assert plan is not None and plan.size == len(first)

    def produce_later_once(batch: object) -> None:
        if not produced:  # while the run follows the topic, more messages arrive
            produced.append(batch)
            produce_events(settings, later)

    produced: list[object] = []
    batches = land_run(settings, plan, follow_s=3.0, on_batch=produce_later_once)
    assert sum(batch.rows_landed for batch in batches) == len(first) + len(later)
    assert len(batches) >= 2  # the planned range, then what arrived while following
    assert sorted(event_ids(settings, "user_visit")) == sorted(e["event_id"] for e in first + later)
    assert plan_next_run(settings, TOPIC) is None  # the stored offsets moved past what the run followed


def test_a_following_run_stops_with_the_reset_hint_when_the_broker_restarts_under_it(
    backend: str, broker: Settings
) -> None:
    produce(broker, 600)
    settings = broker.model_copy(update={"ingest_poll_s": 0.2})
    plan = plan_next_run(settings, TOPIC)
    assert plan is not None

    def restart_broker_once(batch: object) -> None:
        if not restarted:
            restarted.append(batch)
            embedded_broker.stop(settings)
            embedded_broker.start(settings)  # memory-only: the log starts again, shorter than what landed
            create_topics(settings, settings.topic_partitions)
            produce(settings, 60, seed=21)

    restarted: list[object] = []
    with pytest.raises(OffsetMismatchError, match="offsets reset --topic events.user_visit"):
        land_run(settings, plan, follow_s=60.0, on_batch=restart_broker_once)
    assert len(event_ids(settings, "user_visit")) == plan.size  # nothing of the new log landed


def test_stored_offsets_equal_the_next_offsets_to_read(backend: str, broker: Settings) -> None:
    produce(broker, 2_000)
    ingest_until_caught_up(broker, TOPIC)
    table = ensure_raw_table(load_catalog(broker), broker, event_types()["user_visit"])
    stored = stored_offsets(table, TOPIC)
    assert stored.snapshot_id == table.current_snapshot().snapshot_id  # same snapshot as the rows
    assert stored.next_offsets == log_ends(broker, TOPIC)
    rows = table.scan().to_arrow().to_pylist()
    for partition, next_offset in stored.next_offsets.items():
        offsets = sorted(r["kafka_offset"] for r in rows if r["kafka_partition"] == partition)
        assert offsets == list(range(next_offset))  # no gap, no duplicate, ends where the next read starts


def test_second_pass_without_new_data_changes_nothing(backend: str, broker: Settings) -> None:
    produce(broker, 1_500)
    assert ingest_until_caught_up(broker, TOPIC)
    before = current_snapshot_id(broker)
    assert ingest_until_caught_up(broker, TOPIC) == []
    assert plan_next_batch(broker, TOPIC) is None
    assert current_snapshot_id(broker) == before


def test_resume_lands_only_the_new_events(backend: str, broker: Settings) -> None:
    first = produce(broker, 2_000, seed=1)
    ingest_until_caught_up(broker, TOPIC)
    second = produce(broker, 1_000, seed=2)
    results = ingest_until_caught_up(broker, TOPIC)
    assert sum(r.rows_landed for r in results) == counts_by_type(second)["user_visit"]
    ids = event_ids(broker, "user_visit")
    expected = [e["event_id"] for e in first + second if e["event_type"] == "user_visit"]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(expected)


def test_batches_are_bounded_and_cover_the_log_exactly(backend: str, broker: Settings) -> None:
    events = produce(broker, 3_000)
    results = ingest_until_caught_up(broker.model_copy(update={"batch_max_events": 700}), TOPIC)
    assert all(r.plan.size <= 700 for r in results)
    assert sum(r.rows_landed for r in results) == counts_by_type(events)["user_visit"]
    ids = event_ids(broker, "user_visit")
    assert len(ids) == len(set(ids)) == counts_by_type(events)["user_visit"]


def test_overlapping_writer_of_the_same_batch_cannot_land_it_twice(backend: str, broker: Settings) -> None:
    events = produce(broker, 2_000)
    plan = plan_next_batch(broker, TOPIC)
    assert plan is not None
    # A second run of the same batch commits while the first is between read and commit.
    with pytest.raises(ConcurrentIngestError):
        land_batch(broker, plan, before_commit=lambda: land_batch(broker, plan))
    ids = event_ids(broker, "user_visit")
    assert len(ids) == len(set(ids)) == counts_by_type(events)["user_visit"]
    assert land_batch(broker, plan).already_landed  # a late retry of the landed batch is a no-op


def test_broker_restart_is_detected_and_reset_continues_from_the_new_log(backend: str, broker: Settings) -> None:
    first = produce(broker, 1_000)
    ingest_until_caught_up(broker, TOPIC)
    landed_before = len(event_ids(broker, "user_visit"))

    embedded_broker.stop(broker)
    embedded_broker.start(broker)  # memory-only: every topic is gone
    create_topics(broker, broker.topic_partitions)
    with pytest.raises(OffsetMismatchError, match="offsets reset --topic events.user_visit"):
        plan_next_batch(broker, TOPIC)
    assert len(event_ids(broker, "user_visit")) == landed_before  # nothing skipped or re-read

    table = ensure_raw_table(load_catalog(broker), broker, event_types()["user_visit"])
    reset_offsets(table, TOPIC, dict.fromkeys(log_ends(broker, TOPIC), 0), reason="test")
    second = produce(broker, 500, seed=99)
    ingest_until_caught_up(broker, TOPIC)
    ids = event_ids(broker, "user_visit")
    expected = [e["event_id"] for e in first + second if e["event_type"] == "user_visit"]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(expected)


def test_replaced_log_that_grew_past_the_stored_offsets_is_detected(backend: str, broker: Settings) -> None:
    produce(broker, 300, seed=3)
    ingest_until_caught_up(broker, TOPIC)
    embedded_broker.stop(broker)
    embedded_broker.start(broker)
    create_topics(broker, broker.topic_partitions)
    # The new log is longer than the old one, so offsets alone look plausible; the fingerprint of the
    # last landed message does not match what the new log holds at that offset.
    produce(broker, 3_000, seed=4)
    landed_before = len(event_ids(broker, "user_visit"))
    plan = plan_next_batch(broker, TOPIC)
    assert plan is not None
    with pytest.raises(OffsetMismatchError, match="different message"):
        land_batch(broker, plan)
    assert len(event_ids(broker, "user_visit")) == landed_before


def test_expired_snapshot_history_keeps_offsets_and_the_dedup_window(backend: str, broker: Settings) -> None:
    events = [e for e in generate_events(3_000, seed=8) if e["event_type"] == "user_visit"]
    produce_events(broker, events)
    settings = broker.model_copy(update={"batch_max_events": 100, "raw_snapshots_kept": 5})
    results = ingest_until_caught_up(settings, TOPIC)
    assert len(results) > 10  # enough commits to expire history more than once
    table = ensure_raw_table(load_catalog(settings), settings, event_types()["user_visit"])
    assert 5 <= len(table.snapshots()) <= 10
    assert stored_offsets(table, TOPIC).next_offsets == log_ends(settings, TOPIC)
    assert sorted(event_ids(settings, "user_visit")) == sorted(e["event_id"] for e in events)

    # The first event again, whose snapshot is long expired: the window still holds its id.
    produce_events(settings, events[:1])
    (again,) = ingest_until_caught_up(settings, TOPIC)
    assert (again.rows_landed, again.dead_lettered) == (0, 1)
    assert len(event_ids(settings, "user_visit")) == len(events)
