"""How sensors reason about runs, without a daemon: hand-overs, attempts after failures, heartbeats,
and which errors are retried."""

from __future__ import annotations

import errno
from datetime import UTC, datetime

import dagster as dg
import pytest

from analytics_platform.defs.retries import as_terminal
from analytics_platform.defs.run_health import HEARTBEAT_TAG, heartbeat_age
from analytics_platform.defs.runs import HANDOFF_S, MAX_ATTEMPTS, TERMINAL_TAG, handover_from, next_attempt
from analytics_platform.exceptions import (
    ConcurrentIngestError,
    OffsetMismatchError,
    SchemaRegistryError,
    WarehouseFullError,
)

pytestmark = pytest.mark.fast

WORK = "events.purchase|0:0-100"


def run(status: dg.DagsterRunStatus, **tags: str) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="ingest_purchase", status=status, tags=tags)


def record(created_at: float) -> dg.RunRecord:
    return dg.RunRecord(
        storage_id=1,
        dagster_run=run(dg.DagsterRunStatus.STARTED),
        create_timestamp=datetime.fromtimestamp(created_at, UTC),
        update_timestamp=datetime.fromtimestamp(created_at, UTC),
    )


def test_a_successor_is_due_only_for_the_one_following_run_near_its_end() -> None:
    follower = record(created_at=1_000.0)
    due = 1_000.0 + 600 - HANDOFF_S
    assert handover_from([follower], follow_s=600, now=due) == follower.dagster_run.run_id
    assert handover_from([follower], follow_s=600, now=due - 1) is None  # not yet
    assert handover_from([follower], follow_s=0, now=due) is None  # runs that do not follow end by themselves
    assert handover_from([follower, record(2_000.0)], follow_s=600, now=due) is None  # a successor exists already
    assert handover_from([], follow_s=600, now=due) is None


def test_work_is_requested_again_after_a_failure_under_a_new_key_up_to_a_limit() -> None:
    assert next_attempt(WORK, []).run_key == WORK
    failed = [run(dg.DagsterRunStatus.FAILURE)]
    assert next_attempt(WORK, failed).run_key == f"{WORK}|attempt:2"
    assert next_attempt(WORK, failed * 2).run_key == f"{WORK}|attempt:3"
    exhausted = next_attempt(WORK, failed * MAX_ATTEMPTS)
    assert exhausted.run_key is None and "re-execute" in (exhausted.skip_reason or "")
    done = next_attempt(WORK, [run(dg.DagsterRunStatus.SUCCESS), *failed])
    assert done.run_key is None and "already did" in (done.skip_reason or "")


def test_a_terminal_failure_holds_the_work_until_a_person_acts() -> None:
    terminal = run(dg.DagsterRunStatus.FAILURE, **{TERMINAL_TAG: "OffsetMismatchError"})
    held = next_attempt(WORK, [terminal])
    assert held.run_key is None
    assert "retrying cannot fix" in (held.skip_reason or "")


def test_heartbeat_age_counts_from_the_last_beat_or_the_start() -> None:
    assert heartbeat_age(run(dg.DagsterRunStatus.STARTED, **{HEARTBEAT_TAG: "1000"}), 900.0, now=1_030.0) == 30.0
    assert heartbeat_age(run(dg.DagsterRunStatus.STARTED), 900.0, now=1_030.0) == 130.0  # no beat yet
    assert heartbeat_age(run(dg.DagsterRunStatus.STARTED), None, now=1_030.0) is None  # not started


def test_terminal_errors_are_told_apart_from_transient_ones() -> None:
    assert isinstance(as_terminal(OffsetMismatchError("log replaced")), OffsetMismatchError)
    assert isinstance(as_terminal(SchemaRegistryError("incompatible")), SchemaRegistryError)
    full = as_terminal(OSError(errno.ENOSPC, "No space left on device", "/data/duckdb/builds/x"))
    assert isinstance(full, WarehouseFullError) and "PLATFORM_DUCKDB_DIR" in str(full)
    assert as_terminal(ConcurrentIngestError("another writer")) is None  # re-plan and retry
    assert as_terminal(ConnectionResetError("broker went away")) is None
