"""The disk holding the DuckDB builds fills up: ``analytics-platform build`` fails at once with a message
that says what to do, is not retried (a full disk does not empty itself), cleans up its half-written
build, and the published marts stay readable and unchanged.

Real parts: the installed CLI in a subprocess, dbt, DuckDB, and a size-limited file system (a tmpfs,
mounted for the test; it needs root, and the test is skipped where mounting is not permitted) as
PLATFORM_DUCKDB_DIR, filled between builds so that exactly the step under test runs out of space.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.defs.runs import TERMINAL_TAG
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings, get_settings
from analytics_platform.warehouse.connections import connect_marts, published_link
from analytics_platform.warehouse.refresh import REFRESH_JOB
from tests.helpers import produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CLI = str(Path(sys.executable).parent / "analytics-platform")
# DuckDB's extensions (~60 MB), dbt's target folders (~15 MB) and a few builds of a few MB each.
TMPFS_SIZE = "160m"
FILLER = "filler"
# Where a build runs out of space, and what its error says it was doing.
PHASES = {
    "copy": "copying the published marts",
    "pin": "pinning the raw views in the new build",
    "dbt": "dbt, writing the new build or its target folder",
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600, env=dict(os.environ))


@pytest.fixture
def small_duckdb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PLATFORM_DUCKDB_DIR on a tmpfs of TMPFS_SIZE, unmounted afterwards."""
    directory = tmp_path / "duckdb"
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a size-limited tmpfs (this test runs as root, as CI does): {mounted.stderr.strip()}")
    monkeypatch.setenv("PLATFORM_DUCKDB_DIR", str(directory))
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(directory)], check=True)


def fill_leaving(directory: Path, room: int) -> None:
    """Take all free space of ``directory``'s file system but ``room`` bytes."""
    free = shutil.disk_usage(directory).free
    filler = directory / FILLER
    with filler.open("ab") as file:
        os.posix_fallocate(file.fileno(), file.tell(), free - room)


def marts_contents(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table the marts publish, sorted: what a reader of the marts sees."""
    with connect_marts(settings) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' order by all"
        ).fetchall()
        return {
            f"{schema}.{table}": sorted(con.execute(f'select * from "{schema}"."{table}"').fetchall(), key=repr)
            for schema, table in tables
        }


def builds_on_disk(directory: Path) -> set[str]:
    return {path.name for path in (directory / "builds").iterdir()}


def last_refresh_run(instance: dg.DagsterInstance) -> dg.DagsterRun:
    (record,) = instance.get_run_records(dg.RunsFilter(job_name=REFRESH_JOB), limit=1)
    return record.dagster_run


def fill_when_dbt_starts(directory: Path, stop: threading.Event) -> None:
    """Once dbt is pointed at a new build (its copy made and pinned), take every byte left."""
    link = directory / "dbt" / "full"
    before = os.readlink(link)
    wait_for(lambda: stop.is_set() or os.readlink(link) != before, 300, "dbt to start on a new build", 0.02)
    if not stop.is_set():
        fill_leaving(directory, 0)


def test_a_full_warehouse_disk_fails_the_build_clearly_and_keeps_the_published_marts(
    small_duckdb_dir: Path, broker: Settings
) -> None:
    settings = get_settings()
    produce(settings, 3_000, seed=8)
    for topic in event_topics():
        ingest_until_caught_up(settings, topic)
    first = cli("build")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    published = published_link(settings).resolve()
    before = marts_contents(settings)
    assert before["marts.fct_daily_active_users"]  # something to lose
    builds = builds_on_disk(small_duckdb_dir)
    instance = get_instance(settings)
    size = published.stat().st_size

    # Where the space runs out: copying the published file (Python), pinning the raw views in the copy
    # (DuckDB in this process), or dbt writing the build or its target folder (a subprocess).
    for phase, doing in PHASES.items():
        (small_duckdb_dir / FILLER).unlink(missing_ok=True)
        stop = threading.Event()
        filler = None
        if phase == "copy":
            fill_leaving(small_duckdb_dir, size // 2)
        elif phase == "pin":
            fill_leaving(small_duckdb_dir, size)  # exactly the copy
        else:
            filler = threading.Thread(target=fill_when_dbt_starts, args=(small_duckdb_dir, stop))
            filler.start()
        try:
            result = cli("build")
        finally:
            stop.set()
            if filler is not None:
                filler.join()

        assert result.returncode == 1, phase
        message = result.stderr  # the CLI's own words only: the run's log went to <home>/logs/build.log
        assert f"no space left in {small_duckdb_dir} (PLATFORM_DUCKDB_DIR)" in message, message
        assert doing in message and "the published marts are unchanged" in message, message
        assert "not retried" in message
        assert message.startswith("error: ") and "Traceback" not in message + result.stdout, message
        run = last_refresh_run(instance)
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert run.tags.get(TERMINAL_TAG) == "WarehouseFullError"
        retried = {dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED}
        assert not instance.all_logs(run.run_id, of_type=retried), f"{phase}: a full disk was retried"
        assert builds_on_disk(small_duckdb_dir) == builds, f"{phase}: the half-written build was left behind"
        assert published_link(settings).resolve() == published
        assert marts_contents(settings) == before  # readable, and what was published before

    # Once there is room again, the next build publishes (nothing the failures left behind is in its way).
    (small_duckdb_dir / FILLER).unlink()
    again = cli("build")
    assert again.returncode == 0, again.stderr[-3000:]
    assert published_link(settings).resolve() != published
