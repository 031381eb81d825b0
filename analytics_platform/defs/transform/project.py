"""The dbt project, loaded once, with its manifest prepared where Dagster needs it."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"


@cache
def dbt_project() -> DbtProject:
    """The project; ``dbt parse`` runs when the manifest is missing (fresh clone) or under ``dagster dev``."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    project.prepare_if_dev()
    if not project.manifest_path.exists():
        project.preparer.prepare(project)
    return project


def dbt_resource() -> DbtCliResource:
    # The venv's dbt, not whatever `dbt` is first on PATH: dbt-core and dbt-duckdb are pinned here.
    return DbtCliResource(project_dir=dbt_project(), dbt_executable=str(Path(sys.executable).parent / "dbt"))
