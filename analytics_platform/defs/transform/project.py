"""The dbt project, loaded once, with its manifest prepared where Dagster needs it."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"


@cache
def dbt_project() -> DbtProject:
    """The project; ``dbt parse`` runs under ``dagster dev`` and whenever the manifest is missing (fresh
    clone) or older than a model, test or macro file (an edited project never runs a stale manifest)."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    project.prepare_if_dev()
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


def dbt_resource() -> DbtCliResource:
    # The venv's dbt, not whatever `dbt` is first on PATH: dbt-core and dbt-duckdb are pinned here.
    return DbtCliResource(project_dir=dbt_project(), dbt_executable=str(Path(sys.executable).parent / "dbt"))
