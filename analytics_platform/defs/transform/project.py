"""The dbt project as dagster-dbt sees it: loaded once, on first use, never at import.

``dbt parse`` runs (with this environment's dbt, found next to the interpreter) only when the
manifest is missing (a fresh clone) or older than a model, test, macro or seed file, so an edited
project never runs a stale manifest and an unchanged one is not parsed again. Not dagster-dbt's
``prepare_if_dev``: it parses on every load under ``dagster dev``, and every run process ``dagster
dev`` launches inherits that mode, so each ingest or marts run paid a ``dbt parse`` (~5 s of CPU)
before its first step, and concurrent runs rewrote the same manifest.
"""

import fcntl
import functools
import json
from collections.abc import Sequence
from functools import cached_property
from importlib import metadata
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from analytics_platform.warehouse.dbt import DBT_PROJECT_DIR, dbt_executable, manifest_is_stale


class PlatformDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two costs it adds to every run that calls dbt:

    - the dbt adapter it sets up in the run's own process before each command (imports and profile
      loading: 2-4 s). It only serves column metadata and row counts fetched after a command, which the
      platform does not fetch; dbt itself runs as a subprocess with its own adapter either way.
    - ``dbt --version`` run as a subprocess to learn the version (2.7 s). The executable is this
      environment's (:func:`dbt_executable`), so its version is the installed dbt-core's.
    """

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(metadata.version("dbt-core"))


@functools.cache
def dbt_project() -> DbtProject:
    """The project, with a manifest no older than its files.

    Run processes load the definitions at once (several sensors launch runs in the same second), so the
    check and the parse hold a lock: one process parses, the others then find a fresh manifest."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with (project.manifest_path.parent / ".parse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_stale(project.manifest_path):
            parser = PlatformDbtCliResource(project_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable())
            parser.cli(["--quiet", "parse"], target_path=project.target_path).wait()
    return project


@functools.cache
def dbt_manifest() -> dict[str, Any]:
    """The parsed manifest of :func:`dbt_project` (read once per process: it does not change under a run)."""
    manifest: dict[str, Any] = json.loads(dbt_project().manifest_path.read_text())
    return manifest


def dbt_resource() -> DbtCliResource:
    # (mypy's pydantic plugin types the subclass's project_dir as the field, str; __init__ takes a DbtProject.)
    return PlatformDbtCliResource(project_dir=dbt_project(), dbt_executable=dbt_executable())  # type: ignore[arg-type]
