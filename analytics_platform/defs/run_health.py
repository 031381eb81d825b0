"""Noticing a run whose worker died: heartbeats from the run, and a run launcher that reads them.

Dagster's run monitoring fails a run whose worker is gone only if the run launcher can tell, and the
default launcher (runs as subprocesses of a code server) cannot: a run killed together with its code
server (a lost pod, container or host) stayed STARTED for good, and its sensor waited for it forever.
So every run of the platform writes a heartbeat (a run tag, in Dagster's storage, so it works whether
the daemon shares the run's host or not) while its resources are alive, and
:class:`HeartbeatRunLauncher` reports a run whose heartbeat is older than ``heartbeat_timeout_seconds``
as failed. Run monitoring then marks it failed, and its sensor requests the same work again.
"""

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Self

import dagster as dg
from dagster import DefaultRunLauncher, Field, IntSource

# Not exported by dagster: the run launcher interface (dagster-k8s and dagster-docker import it the same way).
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._serdes import ConfigurableClassData

HEARTBEAT_TAG = "analytics_platform/heartbeat_at"
HEARTBEAT_INTERVAL_S = 10.0
DEFAULT_HEARTBEAT_TIMEOUT_S = 60


@contextlib.contextmanager
def run_heartbeat(
    instance: dg.DagsterInstance, run_id: str, interval_s: float = HEARTBEAT_INTERVAL_S
) -> Iterator[None]:
    """Write ``HEARTBEAT_TAG`` on the run every ``interval_s`` while the block runs (from a daemon thread:
    a run busy in native code or in a dbt subprocess still beats)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # storage briefly unreachable: the next beat tries again
                instance.add_run_tags(run_id, {HEARTBEAT_TAG: f"{time.time():.0f}"})
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval_s)


def heartbeat_age(run: dg.DagsterRun, started_at: float | None, now: float) -> float | None:
    """Seconds since the run's last heartbeat (or since it started, before its first); None if unknown."""
    beat = run.tags.get(HEARTBEAT_TAG)
    last = float(beat) if beat else started_at
    return None if last is None else now - last


class HeartbeatRunLauncher(DefaultRunLauncher):
    """Dagster's default run launcher, plus a worker health check from the runs' heartbeats."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        heartbeat_timeout_seconds: int = DEFAULT_HEARTBEAT_TIMEOUT_S,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "heartbeat_timeout_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_HEARTBEAT_TIMEOUT_S,
                description="A started run whose last heartbeat is older than this is reported dead.",
            )
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        record = self._instance.get_run_record_by_id(run.run_id)
        if record is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "run not found")
        started = record.start_time
        age = heartbeat_age(record.dagster_run, started, time.time())
        if age is None or age <= self.heartbeat_timeout_seconds:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"no heartbeat from the run's worker for {age:.0f}s (limit {self.heartbeat_timeout_seconds}s): its "
            "process, or the code server or host it ran on, is gone. Its sensor requests the same work again.",
        )
