"""Where dbt runs: the project, the executable, and the environment that points dbt at one build.

Dagster-free: the dbt assets (:mod:`analytics_platform.defs.transform`) and the analytics engineer's
loop both call dbt through these.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from analytics_platform.exceptions import ConfigError
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import extension_directory

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
# The daily facts' partition range (see dbt_project/macros/daily_partitions.sql).
MIN_DATE_VARIABLE = "PLATFORM_DBT_MIN_DATE"
MAX_DATE_VARIABLE = "PLATFORM_DBT_MAX_DATE"
# The live facts' earliest minute to recompute within that range (UTC, ISO 8601): only the live follower sets it.
MIN_TIME_VARIABLE = "PLATFORM_DBT_MIN_TIME"
# The platform's builds use the profile's `platform` target; its default, `dev`, is the analytics engineer's.
TARGET_VARIABLE = "PLATFORM_DBT_TARGET"
PLATFORM_TARGET = "platform"
DUCKDB_PATH_VARIABLE = "PLATFORM_DBT_DUCKDB_PATH"
EXTENSION_DIR_VARIABLE = "PLATFORM_DUCKDB_EXTENSION_DIR"
_PROJECT_FOLDERS = ("models", "macros", "tests", "snapshots", "seeds")


def dbt_executable() -> str:
    """The dbt of the running interpreter's environment (dbt-core and dbt-duckdb are pinned there), found
    next to ``sys.executable`` so no command depends on the venv being on PATH; else ``dbt`` on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    on_path = shutil.which("dbt")
    if on_path is None:
        raise ConfigError(
            f"no dbt executable next to {sys.executable} nor on PATH; install the platform with `make install` "
            "(dbt-core and dbt-duckdb are among its pinned dependencies)"
        )
    return on_path


def manifest_is_stale(manifest: Path, project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """Whether ``manifest`` is missing or older than a model, test, macro, snapshot, seed or the project file."""
    if not manifest.exists():
        return True
    sources = (
        path
        for folder in _PROJECT_FOLDERS
        for path in (project_dir / folder).rglob("*")
        if path.suffix in {".sql", ".yml", ".yaml", ".csv"}
    )
    newest = max((path.stat().st_mtime for path in sources), default=0.0)
    built = manifest.stat().st_mtime
    return newest > built or (project_dir / "dbt_project.yml").stat().st_mtime > built


@contextlib.contextmanager
def dbt_pointed_at(
    settings: Settings,
    build: Path,
    slot: str,
    dates: tuple[str, str] | None = None,
    since: datetime | None = None,
) -> Iterator[None]:
    """Point the dbt commands run inside at ``build`` (dagster-dbt hands them the current environment).

    dbt skips re-parsing the project only if its profile is unchanged, and the profile holds the DuckDB
    path: so dbt opens the build through a fixed path per ``slot`` (one per kind of build that may run
    at the same time as another), ``<duckdb dir>/dbt/<slot>``, a link replaced to point at the build's
    folder. A path that changed with every build cost every dbt command a full parse (~4 s here).

    ``dates`` (first, last partition key) are the days the daily facts rebuild, handed over as
    environment variables for the same reason: dbt re-parses the whole project when ``--vars``
    change (every new day or range), but only the files that read an environment variable when it does.
    ``since`` (the live facts only) narrows the first of those days to the minutes from it on; the macros
    read it only when executing, so it changing every few seconds costs no parse at all.
    """
    link = settings.duckdb_path / "dbt" / slot
    link.parent.mkdir(parents=True, exist_ok=True)
    staging = link.with_name(f".{slot}.{uuid.uuid4().hex}")
    staging.symlink_to(build.parent.resolve())
    os.replace(staging, link)
    variables = {
        TARGET_VARIABLE: PLATFORM_TARGET,
        DUCKDB_PATH_VARIABLE: str(link / build.name),
        EXTENSION_DIR_VARIABLE: str(extension_directory(settings)),
        MIN_DATE_VARIABLE: dates[0] if dates else None,
        MAX_DATE_VARIABLE: dates[1] if dates else None,
        MIN_TIME_VARIABLE: since.astimezone(UTC).isoformat() if since else None,
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
