"""The serving API over a copy of the session's landed marts, with one API key per role."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from analytics_platform.serving.access import KeyStore, Role
from analytics_platform.serving.api.app import create_app
from analytics_platform.settings import Settings
from tests.landed import LandedMarts

RESTRICTED_COUNTRIES = ["DE", "FR"]


@dataclass(frozen=True)
class Served:
    settings: Settings
    keys: dict[str, str]  # viewer, analyst, operator, restricted (an analyst limited to RESTRICTED_COUNTRIES)

    def client(self) -> TestClient:
        """A new API process, as after a restart (nothing kept open)."""
        return TestClient(create_app(self.settings))

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
def served(landed_marts: LandedMarts, tmp_path: Path) -> Served:
    """The landed marts' published builds copied to this test's own folder: a test may publish more."""
    duckdb_dir = tmp_path / "duckdb"
    shutil.copytree(landed_marts.settings.duckdb_path, duckdb_dir, symlinks=True)
    settings = landed_marts.settings.model_copy(
        update={
            "duckdb_dir": duckdb_dir,
            "api_keys_file": tmp_path / "api-keys.yaml",
            "api_secret_file": tmp_path / "api-secret",
        }
    )
    store = KeyStore(settings.api_keys_path)
    keys = {role.name: store.create(role.name, role, None) for role in Role}
    keys["restricted"] = store.create("restricted", Role.analyst, RESTRICTED_COUNTRIES)
    return Served(settings, keys)


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with served.client() as client:
        yield client
