"""The serving API over a copy of the session's landed marts, with one API key per role."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from analytics_platform.local.dev import api_answers
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.serving.access import KeyStore, Role
from analytics_platform.serving.api.app import create_app
from analytics_platform.settings import Settings
from tests.helpers import free_port, wait_for
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


CLI = str(Path(sys.executable).parent / "analytics-platform")


@dataclass(frozen=True)
class RunningApi:
    port: int
    env: dict[str, str]  # the server's environment: a CLI run with it uses the same home and keys


@contextlib.contextmanager
def serving_api(settings: Settings, log: Path, **variables: str) -> Iterator[RunningApi]:
    """``analytics-platform serve`` as a process, on these settings' home, marts and keys (plus ``variables``),
    once it answers."""
    port = free_port()
    env = os.environ | {
        "PLATFORM_HOME": str(settings.home),
        "PLATFORM_DUCKDB_DIR": str(settings.duckdb_path),
        "PLATFORM_API_KEYS_FILE": str(settings.api_keys_path),
        "PLATFORM_API_SECRET_FILE": str(settings.api_secret_path),
        "PLATFORM_API_PORT": str(port),
        **variables,
    }
    server = spawn([CLI, "serve"], log, env=env)
    try:
        wait_for(lambda: api_answers("127.0.0.1", port), 60, "the API to answer", poll_s=0.2)
        yield RunningApi(port, env)
    finally:
        stop_group(server)


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with served.client() as client:
        yield client
