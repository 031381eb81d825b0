"""The code location loads and validates the way Dagster tooling loads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_platform.local.instance import prepare_dagster_home
from analytics_platform.settings import get_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate_passes() -> None:
    prepare_dagster_home(get_settings())
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
