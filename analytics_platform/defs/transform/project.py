"""The dbt project, loaded once, with its manifest prepared where Dagster needs it."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from functools import cache, cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from analytics_platform import warehouse
from analytics_platform.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"
# The daily facts' partition range (see dbt_project/macros/daily_partitions.sql).
MIN_DATE_VARIABLE = "PLATFORM_DBT_MIN_DATE"
MAX_DATE_VARIABLE = "PLATFORM_DBT_MAX_DATE"


@cache
def dbt_project() -> DbtProject:
    """The project; ``dbt parse`` runs whenever the manifest is missing (fresh clone) or older than a
    model, test or macro file, so an edited project never runs a stale manifest.

    Not dagster-dbt's ``prepare_if_dev``: it parses on every load under ``dagster dev``, and every run
    process ``dagster dev`` launches inherits that mode, so each ingest or marts run paid a ``dbt parse``
    (~5 s of CPU) before its first step, and concurrent runs rewrote the same manifest."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    if _manifest_is_stale(project.manifest_path):
        project.preparer.prepare(project)
    return project


def _manifest_is_stale(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    sources = (
        path
        for folder in ("models", "macros", "tests", "snapshots", "seeds")
        for path in (DBT_PROJECT_DIR / folder).rglob("*")
        if path.suffix in {".sql", ".yml", ".yaml", ".csv"}
    )
    newest = max((path.stat().st_mtime for path in sources), default=0.0)
    return (
        newest > manifest.stat().st_mtime
        or (DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime > manifest.stat().st_mtime
    )


class PlatformDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two costs it adds to every run that calls dbt:

    - the dbt adapter it sets up in the run's own process before each command (imports and profile
      loading: 2-4 s). It only serves column metadata and row counts fetched after a command, which the
      platform does not fetch; dbt itself runs as a subprocess with its own adapter either way.
    - ``dbt --version`` run as a subprocess to learn the version (2.7 s). The executable is this venv's
      (``dbt_resource``), so its version is the installed dbt-core's.
    """

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(metadata.version("dbt-core"))


def dbt_resource() -> DbtCliResource:
    # The venv's dbt, not whatever `dbt` is first on PATH: dbt-core and dbt-duckdb are pinned here.
    # (mypy's pydantic plugin types the subclass's project_dir as the field, str; __init__ takes a DbtProject.)
    executable = str(Path(sys.executable).parent / "dbt")
    return PlatformDbtCliResource(project_dir=dbt_project(), dbt_executable=executable)  # type: ignore[arg-type]


@contextlib.contextmanager
def dbt_pointed_at(settings: Settings, build: Path, slot: str, dates: tuple[str, str] | None = None) -> Iterator[None]:
    """Point the dbt commands run inside at ``build`` (dagster-dbt hands them the current environment).

    dbt skips re-parsing the project only if its profile is unchanged, and the profile holds the DuckDB
    path: so dbt opens the build through a fixed path per ``slot`` (one per kind of build that may run
    at the same time as another), ``<duckdb dir>/dbt/<slot>``, a link replaced to point at the build's
    folder. A path that changed with every build cost every dbt command a full parse (~4 s here).

    ``dates`` (first, last partition key) are the days the daily facts rebuild, handed over as
    environment variables for the same reason: dbt re-parses the whole project when ``--vars``
    change (every new day or range), but only the files that read an environment variable when it does.
    """
    link = settings.duckdb_path / "dbt" / slot
    link.parent.mkdir(parents=True, exist_ok=True)
    staging = link.with_name(f".{slot}.{uuid.uuid4().hex}")
    staging.symlink_to(build.parent.resolve())
    os.replace(staging, link)
    variables = {
        "PLATFORM_DBT_DUCKDB_PATH": str(link / build.name),
        "PLATFORM_DUCKDB_EXTENSION_DIR": str(warehouse.extension_directory(settings)),
        MIN_DATE_VARIABLE: dates[0] if dates else None,
        MAX_DATE_VARIABLE: dates[1] if dates else None,
    }
    saved = {name: os.environ.get(name) for name in variables}
    _set_environment(variables)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(variables: dict[str, str | None]) -> None:
    for name, value in variables.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def dbt_target(settings: Settings, name: str) -> Path:
    """A dbt target folder kept across builds of one kind, so dbt finds its partial parse there (dagster-dbt
    would use a new folder per command; dbt also re-parses the files that read an environment variable
    whose value changed, so kinds with different date ranges get their own folder). Builds of one kind
    never overlap: they hold the build or publish lock."""
    return settings.duckdb_path / "dbt" / "targets" / name
