"""The installed command works from a shell whose PATH does not hold the venv, on a fresh clone's state.

Run as ``.venv/bin/analytics-platform ...`` with ``PATH=/usr/bin:/bin`` (no venv activated), and with no
dbt manifest at all, as after a fresh clone or ``git clean``: ``--help`` and ``ingest`` must not need dbt
(no manifest appears), ``build`` parses the project with the venv's dbt (found next to the interpreter,
not on PATH) and publishes, ``summary`` reads what landed.

The manifest is made missing without touching the checkout (other tests read its manifest at the same
time): the command runs on a copy of the package and the dbt project, without the project's ``target``
folder, put first on PYTHONPATH. Everything else (the console script, the interpreter and dbt in the
venv, the editable install) is the real installation.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import analytics_platform
from analytics_platform.warehouse.dbt import DBT_PROJECT_DIR

pytestmark = [pytest.mark.integration, pytest.mark.faults]

CLI = Path(sys.executable).parent / "analytics-platform"
BARE_PATH = "/usr/bin:/bin"  # what a login shell has without the venv activated


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """The package and the dbt project as a fresh clone has them: no dbt target, logs or packages."""
    root = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "target", "logs", "dbt_packages", ".user.yml")
    shutil.copytree(Path(analytics_platform.__file__).parent, root / "analytics_platform", ignore=ignore)
    shutil.copytree(DBT_PROJECT_DIR, root / "dbt_project", ignore=ignore)
    return root


def run(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    env |= {"PATH": BARE_PATH, "PYTHONPATH": str(clone)}
    # From outside the checkout: with a working directory holding the package, `python -c` would import that.
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=600, env=env, cwd=clone)


def test_the_installed_command_works_without_the_venv_on_path_and_without_a_manifest(fresh_clone: Path) -> None:
    assert shutil.which("dbt", path=BARE_PATH) is None  # dbt can only be found next to the interpreter
    manifest = fresh_clone / "dbt_project" / "target" / "manifest.json"
    where = run(fresh_clone, "--help")
    assert where.returncode == 0, where.stderr
    for command in ("ingest", "build", "summary"):
        assert command in where.stdout
    located = subprocess.run(
        [str(CLI.parent / "python"), "-c", "import analytics_platform; print(analytics_platform.__file__)"],
        capture_output=True,
        text=True,
        env={"PATH": BARE_PATH, "PYTHONPATH": str(fresh_clone)},
        cwd=fresh_clone.parent,
    )
    assert located.stdout.startswith(str(fresh_clone)), located.stdout + located.stderr  # the copy is what runs

    assert run(fresh_clone, "broker", "start").returncode == 0
    try:
        generate = run(fresh_clone, "generate", "--events", "3000", "--seed", "8", "--days", "2")
        assert generate.returncode == 0, generate.stderr
        ingest = run(fresh_clone, "ingest")
        assert ingest.returncode == 0, ingest.stderr[-3000:]
        assert "events.user_visit: caught up" in ingest.stdout
        assert not manifest.exists()  # landing Kafka into Iceberg does not parse dbt

        build = run(fresh_clone, "build")
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        assert manifest.exists()  # parsed by the venv's dbt, found without PATH
        assert "marts built and published" in build.stdout

        summary = run(fresh_clone, "summary")
        assert summary.returncode == 0, summary.stderr[-3000:]
        assert re.search(r"raw\.dead_letter +0\n", summary.stdout), summary.stdout
    finally:
        run(fresh_clone, "broker", "stop")
