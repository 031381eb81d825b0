"""Batch work yields the CPU to ingestion: marts builds, the live follower, maintenance and the anomaly checks
lower their run's priority to PLATFORM_BATCH_NICENESS, for what they start too; ingestion keeps its own.

Linux keeps a priority per thread, so each case runs in a thread of its own and the test's never changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.maintenance.jobs import EXPIRE_JOB
from analytics_platform.defs.workloads import INGEST, LIVE, MAINTENANCE, MARTS, QUALITY, REPLAY
from analytics_platform.settings import get_settings
from tests.conftest import set_environment

pytestmark = pytest.mark.fast

T = TypeVar("T")


def _priority() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def _in_thread(work: Callable[[], T]) -> T:
    done: list[T] = []
    thread = threading.Thread(target=lambda: done.append(work()))
    thread.start()
    thread.join()
    assert done, "the work raised (see the thread's traceback above)"
    return done[0]


def _child_priority() -> int:
    """The priority of a process started now, as dbt is by a build."""
    code = "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_batch_work_and_what_it_starts_run_below_ingestion() -> None:
    settings = get_settings()
    test_priority = _priority()
    assert test_priority < settings.batch_niceness == 10

    for batch in (MARTS, LIVE, MAINTENANCE, QUALITY):

        def lowered(batch=batch) -> tuple[int, int]:  # type: ignore[no-untyped-def]
            batch.lower_priority(settings)
            return _priority(), _child_priority()

        assert _in_thread(lowered) == (10, 10), batch.name

    for ingestion in (INGEST, REPLAY):

        def kept(ingestion=ingestion) -> tuple[int, int]:  # type: ignore[no-untyped-def]
            ingestion.lower_priority(settings)
            return _priority(), _child_priority()

        assert _in_thread(kept) == (test_priority, test_priority), ingestion.name
    assert _priority() == test_priority


def test_a_lower_priority_is_never_raised_and_zero_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def already_lower() -> int:
        os.setpriority(os.PRIO_PROCESS, 0, 15)
        MARTS.lower_priority(get_settings())
        return _priority()

    assert _in_thread(already_lower) == 15
    set_environment(monkeypatch, PLATFORM_BATCH_NICENESS="0")
    test_priority = _priority()

    def unchanged() -> int:
        MARTS.lower_priority(get_settings())
        return _priority()

    assert _in_thread(unchanged) == test_priority


def test_a_maintenance_run_works_below_ingestion() -> None:
    """The job as Dagster runs it: its op lowers the priority of the thread it runs in."""
    job = platform_definitions().resolve_job_def(EXPIRE_JOB)
    run_config = {"ops": {"expire_raw_snapshots_op": {"config": {"dry_run": True}}}}

    def run() -> tuple[bool, int]:
        return job.execute_in_process(run_config=run_config).success, _priority()

    assert _in_thread(run) == (True, 10)
