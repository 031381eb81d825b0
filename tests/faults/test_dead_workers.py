"""Runs that die with their process tree, and a daemon that dies, under ``make dev``: nothing stops a
topic for good. Real processes throughout: the embedded broker, ``dagster dev`` with its daemon, run
monitoring and sensors, runs launched in code-server subprocesses."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.ingestion.jobs import ingest_job_name
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.local.instance import get_instance
from analytics_platform.local.report import landed_counts
from analytics_platform.settings import Settings, get_settings
from tests.dev import alive, command_line, parent_of, processes_with_home, run_worker_pid, running_dev
from tests.helpers import counts_by_type, event_ids, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

VISITS = event_types()["user_visit"]
RECOVERY_S = 180  # the bound: the topic lands again within 3 minutes of the kill


@pytest.fixture
def dev_settings(isolated_platform: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PLATFORM_BATCH_MAX_EVENTS", "10000")  # several micro-batches: a kill lands mid-stream
    monkeypatch.setenv("PLATFORM_MARTS_REFRESH_INTERVAL_S", "3600")  # one marts build, not one per minute
    return get_settings()


def landed_per_type(settings: Settings) -> Counter[str]:
    landed, _ = landed_counts(load_catalog(settings), settings)
    return Counter({name: count for name, count in landed.items() if count})


def following_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    records = instance.get_run_records(
        dg.RunsFilter(job_name=ingest_job_name(VISITS), statuses=[dg.DagsterRunStatus.STARTED]), limit=1
    )
    return records[0].dagster_run if records else None


def assert_exactly_once(settings: Settings, produced: list[dict]) -> None:
    expected = counts_by_type(produced)
    assert landed_per_type(settings) == expected
    for name in expected:
        ids = event_ids(settings, name)
        assert len(ids) == len(set(ids)) == expected[name], name  # nothing doubled, nothing lost


def test_a_run_killed_with_its_code_server_is_failed_and_its_topic_lands_again(
    isolated_platform: Path, dev_settings: Settings
) -> None:
    settings = dev_settings
    with running_dev(isolated_platform, "--rate", "0"):
        instance = get_instance(settings)
        produced = produce(settings, 6_000, seed=1)
        wait_for(
            lambda: landed_per_type(settings) == counts_by_type(produced), 300, "the sensors' runs to land the stream"
        )
        run = wait_for(lambda: following_run(instance), 60, "a following ingest run of events.user_visit")
        worker = wait_for(lambda: run_worker_pid(instance, run.run_id), 30, "the run worker's pid")
        server = parent_of(worker)
        assert "dagster" in command_line(server), command_line(server)  # the code server that launched it

        produced += produce(settings, 60_000, seed=2)
        before = landed_per_type(settings)[VISITS.name]
        wait_for(lambda: landed_per_type(settings)[VISITS.name] > before, 60, "the run to start landing the burst")
        os.kill(worker, signal.SIGKILL)  # mid-stream: more micro-batches of the burst are still to come
        os.kill(server, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: not alive(worker) and not alive(server), 30, "the killed processes to be gone")
        produced += produce(settings, 6_000, seed=3)  # sent after the kill
        at_kill = landed_per_type(settings)[VISITS.name]  # the dead can commit no more

        wait_for(
            lambda: landed_per_type(settings)[VISITS.name] > at_kill,
            RECOVERY_S,
            "the topic to land again after its run died",
        )
        assert time.monotonic() - killed_at < RECOVERY_S
        wait_for(lambda: landed_per_type(settings) == counts_by_type(produced), 300, "the rest of the burst to land")
        dead = instance.get_run_by_id(run.run_id)
        assert dead is not None and dead.status == dg.DagsterRunStatus.FAILURE
        assert any("no heartbeat" in (entry.message or "") for entry in instance.all_logs(run.run_id))
        assert_exactly_once(settings, produced)


def test_a_killed_daemon_is_restarted_and_ingestion_resumes(isolated_platform: Path, dev_settings: Settings) -> None:
    settings = dev_settings
    with running_dev(isolated_platform, "--rate", "0") as dev:
        produced = produce(settings, 6_000, seed=4)
        wait_for(
            lambda: landed_per_type(settings) == counts_by_type(produced), 300, "the sensors' runs to land the stream"
        )
        daemons = [pid for pid in processes_with_home(isolated_platform) if "dagster._daemon run" in command_line(pid)]
        assert len(daemons) == 1, [command_line(pid) for pid in processes_with_home(isolated_platform)]
        os.kill(daemons[0], signal.SIGKILL)
        produced += produce(settings, 30_000, seed=5)

        wait_for(lambda: "dagster dev exited" in dev.output(), 60, "make dev to notice dagster dev went down")
        wait_for(
            lambda: landed_per_type(settings) == counts_by_type(produced),
            RECOVERY_S + 120,  # the restart itself loads the code location again
            "ingestion to resume after the daemon was restarted",
        )
        assert_exactly_once(settings, produced)
