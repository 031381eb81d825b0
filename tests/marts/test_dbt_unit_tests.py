"""The dbt unit tests (fixed inputs, expected outputs) run here, in CI: production builds skip them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analytics_platform.defs.transform.project import dbt_resource
from analytics_platform.warehouse.dbt import dbt_pointed_at, dbt_target
from tests.landed import LandedMarts

pytestmark = pytest.mark.integration

UNIT_TESTS = 19  # `unit_tests:` in the models' YAML


def test_every_dbt_unit_test_passes(landed_marts: LandedMarts, tmp_path: Path) -> None:
    # dbt needs the models' inputs to exist to type the fixtures: a copy of the published build has them.
    build = tmp_path / "unit" / "warehouse.duckdb"
    build.parent.mkdir()
    shutil.copyfile(landed_marts.marts, build)
    settings = landed_marts.settings
    with dbt_pointed_at(settings, build, "unit"):
        command = ["test", "--select", "test_type:unit"]
        invocation = dbt_resource().cli(command, target_path=dbt_target(settings, "unit"), raise_on_error=False).wait()
    results = invocation.get_artifact("run_results.json")["results"]
    assert len(results) == UNIT_TESTS
    assert [result["unique_id"] for result in results if result["status"] != "pass"] == []
