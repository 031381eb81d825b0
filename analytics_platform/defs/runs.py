"""How the sensors reason about runs: which are in flight, when a follower hands over, and whether a
failed piece of work is tried again.

A sensor requests a run for a piece of work (an offset range, a set of raw snapshots) under a run key
derived from it. If that run dies (its worker killed, its host lost: run monitoring marks it failed)
or fails transiently beyond its op retries, the same work is requested again under the key plus an
attempt number; exactly-once never rests on run keys, only on the offsets committed with the rows.
A run that failed with a terminal error is not tried again until a person acts (the failure says how).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

SENSOR_INTERVAL_S = 5  # Dagster's floor; the default 30 s would dominate freshness
# A run launch costs ~15-20 s here: a following run's successor is requested this long before the
# following run is due to end, starts while it still lands, and takes over the moment it ends.
HANDOFF_S = 60.0
HANDOFF_POLL_S = 0.5
MAX_ATTEMPTS = 3
WORK_TAG = "analytics_platform/work"  # the piece of work a sensor's run does (its run key without attempt)
TERMINAL_TAG = "analytics_platform/terminal_failure"  # set by a run that failed with a TerminalError
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def handover_from(in_flight: Sequence[dg.RunRecord], follow_s: float, now: float) -> str | None:
    """The run a successor should take over from: the only run in flight, if it follows (``follow_s``)
    and is due to end within HANDOFF_S; None when no successor is due."""
    if len(in_flight) != 1 or follow_s <= 0:
        return None
    run = in_flight[0]
    return run.dagster_run.run_id if now >= run.create_timestamp.timestamp() + follow_s - HANDOFF_S else None


def wait_for_run_to_end(instance: dg.DagsterInstance, run_id: str, log: dg.DagsterLogManager) -> None:
    """Block until ``run_id`` is no longer queued, starting or running (the hand-off between followers)."""
    log.info(f"taking over from run {run_id} when it ends")
    while (run := instance.get_run_by_id(run_id)) is not None and run.status in IN_FLIGHT:
        time.sleep(HANDOFF_POLL_S)


@dataclass(frozen=True)
class Attempt:
    """Whether to request a piece of work now: under ``run_key``, or not (``skip_reason`` says why)."""

    run_key: str | None
    skip_reason: str | None = None


def next_attempt(work: str, earlier: Sequence[dg.DagsterRun]) -> Attempt:
    """The request for ``work``, given the runs that did it before (newest first, none in flight).

    First time: the run key is ``work``. After a failure: ``work|attempt:N``, up to MAX_ATTEMPTS. After
    a success: nothing to do. After a terminal failure: nothing until a person acts.
    """
    if not earlier:
        return Attempt(work)
    last = earlier[0]
    if last.status == dg.DagsterRunStatus.SUCCESS:
        return Attempt(None, f"run {last.run_id} already did {work}")
    if last.tags.get(TERMINAL_TAG):
        return Attempt(
            None,
            f"run {last.run_id} failed with an error retrying cannot fix (see its log for the fix); once fixed, "
            "re-execute that run from the Dagster UI",
        )
    if len(earlier) >= MAX_ATTEMPTS:
        return Attempt(
            None,
            f"{len(earlier)} runs of {work} failed (last: {last.run_id}); see their logs, fix the cause and "
            "re-execute the last one from the Dagster UI",
        )
    return Attempt(f"{work}|attempt:{len(earlier) + 1}")


def earlier_runs(instance: dg.DagsterInstance, work: str) -> list[dg.DagsterRun]:
    """The runs that did ``work`` (tagged WORK_TAG with it), newest first."""
    records = instance.get_run_records(dg.RunsFilter(tags={WORK_TAG: work}), limit=MAX_ATTEMPTS)
    return [record.dagster_run for record in records]


def last_run_failed_terminally(instance: dg.DagsterInstance, job_name: str) -> dg.DagsterRun | None:
    """The job's most recent run, if it failed with a terminal error (the sensor then waits for a person)."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name), limit=1)
    if records and records[0].dagster_run.status == dg.DagsterRunStatus.FAILURE:
        run = records[0].dagster_run
        return run if run.tags.get(TERMINAL_TAG) else None
    return None
