"""PostgreSQL, which holds both the Iceberg catalog and Dagster's storage, restarted while ingest runs land
a topic: a run fails with a transient error, its op retry lands the rest, nothing is lost or doubled.

Real parts throughout: the embedded broker, the ingest jobs executed in this process on the instance the
CLI uses (Dagster storage on PostgreSQL), and this machine's PostgreSQL server, restarted with
``pg_ctlcluster`` (a fast shutdown: every open connection is terminated, as in a failover or an upgrade).

A restart does not always fail the run, and that is by design: Dagster retries its own connections for
a few seconds, and the catalog's pool replaces dead connections (``pool_pre_ping``), so a run whose first
call during the outage is one of Dagster's rides it out. Only a catalog call made while the server is
down fails the step. So the test restarts the server again, while the run lands, until one restart has
made the step fail and retry (in practice the first or second).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path

import dagster as dg
import pytest
from dagster_shared.error import SerializableErrorInfo
from pyiceberg.catalog import Catalog

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.ingestion.jobs import ingest_job_name
from analytics_platform.defs.runs import TERMINAL_TAG
from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import open_table
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import ingest_through_dagster
from analytics_platform.settings import Settings, get_settings
from tests.helpers import counts_by_type, event_ids, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

VISITS = event_types()["user_visit"]
MAX_RESTARTS = 4


def pg_ctlcluster(action: str) -> subprocess.CompletedProcess[str]:
    (version,) = (path.name for path in Path("/etc/postgresql").iterdir())
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        capture_output=True,
        text=True,
        timeout=60,
    )


def restart_postgres() -> float:
    """Restart the server (fast shutdown, then start, waiting until it accepts connections); returns the
    seconds it was away. Whatever happens, the server is left running: other tests share it."""
    started = time.monotonic()
    try:
        restarted = pg_ctlcluster("restart")
        assert restarted.returncode == 0, restarted.stderr
    finally:
        if pg_ctlcluster("status").returncode != 0:
            pg_ctlcluster("start")
    return time.monotonic() - started


def visits_snapshot(catalog: Catalog, settings: Settings) -> int | None:
    """The id of raw.user_visit's current snapshot (None before its first commit)."""
    try:
        snapshot = open_table(catalog, settings, VISITS.name).current_snapshot()
    except TableNotFoundError:
        return None
    return snapshot.snapshot_id if snapshot else None


def step_retries(instance: dg.DagsterInstance) -> list[dg.DagsterEvent]:
    """Every STEP_UP_FOR_RETRY of the user_visit ingest runs."""
    return [
        entry.dagster_event
        for run in instance.get_runs(dg.RunsFilter(job_name=ingest_job_name(VISITS)))
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        if entry.dagster_event is not None
    ]


def error_chain(event: dg.DagsterEvent) -> list[str]:
    """Class names of the error a step was retried after, outermost first (Dagster wraps the op's error)."""
    names: list[str] = []
    error: SerializableErrorInfo | None = event.step_retry_data.error
    while error is not None:
        names.append(error.cls_name or "")
        error = error.cause
    return names


def test_a_postgres_restart_mid_ingest_is_retried_and_lands_every_event_once(
    postgres: str, broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small micro-batches (one Iceberg commit each): the run commits every few tenths of a second for
    # longer than a few restarts take, so each restart falls into the run.
    monkeypatch.setenv("PLATFORM_BATCH_MAX_EVENTS", "150")
    settings = get_settings()
    produced = produce(settings, 20_000, seed=11)
    expected = counts_by_type(produced)
    instance = get_instance(settings)
    ingested = threading.Event()
    restarts: list[tuple[float, str]] = []  # (seconds away, what the run did)
    errors: list[BaseException] = []

    def restart_while_landing() -> None:
        catalog = load_catalog(settings)

        def since(before: int | None) -> str | None:
            """What the run did since its snapshot ``before``: the step failed and is retried, or it
            committed again without failing (it rode the restart out), or the run ended. A retry is
            stored before the retried step commits, so it is seen first."""
            if step_retries(instance):
                return "retried"
            if visits_snapshot(catalog, settings) != before:
                return "rode it out"
            return "run ended" if ingested.is_set() else None

        wait_for(lambda: ingested.is_set() or visits_snapshot(catalog, settings), 120, "the first commit", 0.05)
        while not ingested.is_set() and len(restarts) < MAX_RESTARTS:
            before = visits_snapshot(catalog, settings)
            seconds = restart_postgres()
            outcome = wait_for(partial(since, before), 60, "the ingest run to go on after the restart", 0.1)
            restarts.append((seconds, outcome))
            if outcome != "rode it out":
                return

    def restarter_main() -> None:
        try:
            restart_while_landing()
        except BaseException as error:  # re-raised by the test thread
            errors.append(error)

    restarter = threading.Thread(target=restarter_main, name="restart-postgres")
    restarter.start()
    started = time.monotonic()
    try:
        # The busiest topic first, so the restarts fall into its run; then every other topic.
        for topic in [VISITS.topic, *(t.topic for t in event_types().values() if t != VISITS)]:
            for _ in ingest_through_dagster(settings, topic):
                pass
    finally:
        ingested.set()
        restarter.join(timeout=120)
    print(f"ingested in {time.monotonic() - started:.1f} s; restarts (seconds away, outcome): {restarts}")
    if errors:
        raise errors[0]
    assert restarts and restarts[-1][1] == "retried", f"no restart failed a step while the run landed: {restarts}"

    runs = instance.get_runs()
    assert runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)  # retried, then succeeded
    assert not any(TERMINAL_TAG in run.tags for run in runs)  # never taken for a terminal failure
    retried = step_retries(instance)
    for event in retried:  # a lost database connection: transient, retried by the op's policy
        assert "OperationalError" in error_chain(event), error_chain(event)
    restarted = [
        entry for run in runs for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_RESTARTED)
    ]
    assert len(restarted) == len(retried) >= 1

    assert Counter({name: len(event_ids(settings, name)) for name in expected}) == expected  # nothing lost
    for name in expected:
        ids = event_ids(settings, name)
        assert len(ids) == len(set(ids)), f"{name}: an event_id landed twice"


def test_a_catalog_opened_before_a_restart_works_after_it(postgres: str) -> None:
    """The catalog's pooled connections die with the server; the pool replaces them once it is back."""
    settings = get_settings()
    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists(settings.raw_namespace)
    restart_postgres()
    assert (settings.raw_namespace,) in catalog.list_namespaces()
