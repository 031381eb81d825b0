"""Settings never show a password: a real command that reports its settings, run against the machine's
PostgreSQL with a password in every URL that can hold one, prints none and leaves none in the files it writes.

The server trusts local connections, so any password connects: what is checked is where it ends up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import open_table
from analytics_platform.settings import get_settings
from tests.conftest import set_environment
from tests.helpers import free_port

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "analytics-platform")


@pytest.fixture
def password(postgres: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A password in the catalog's and Dagster's URLs, the Schema Registry's and the alert webhook's."""
    password = f"pw{uuid.uuid4().hex}"
    url = postgres.replace("://postgres@", f"://postgres:{password}@")
    set_environment(
        monkeypatch,
        PLATFORM_CATALOG_URI=url,
        PLATFORM_DAGSTER_STORAGE_URL=url,
        PLATFORM_SCHEMA_REGISTRY_URL=f"http://registry:{password}@127.0.0.1:{free_port()}",
        PLATFORM_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hooks/{password}",
        PLATFORM_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing listens: fails at once
    )
    return password


def test_doctor_shows_where_without_the_password(password: str, isolated_platform: Path) -> None:
    result = subprocess.run([CLI, "doctor"], capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 1, result.stdout + result.stderr  # the broker is down
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith(("ok", "FAIL"))}
    assert lines["catalog"].startswith("ok    catalog          postgresql+psycopg2://postgres:***@127.0.0.1:5432/")
    assert lines["dagster"].startswith("ok    dagster storage  postgresql+psycopg2://postgres:***@127.0.0.1:5432/")
    assert "http://registry:***@127.0.0.1:" in lines["schema"]
    assert password not in result.stdout + result.stderr
    written = [path for path in isolated_platform.rglob("*") if path.is_file()]
    assert isolated_platform / "dagster" / "dagster.yaml" in written  # the Dagster instance it opened
    assert [path for path in written if password.encode() in path.read_bytes()] == []


def test_an_error_naming_the_catalog_hides_the_password(password: str) -> None:
    """Such a message ends up in a run's event log, which the Dagster UI shows to anyone."""
    settings = get_settings()
    with pytest.raises(TableNotFoundError) as missing:
        open_table(load_catalog(settings), settings, "visit")
    assert "postgresql+psycopg2://postgres:***@127.0.0.1:5432/" in str(missing.value)
    assert password not in str(missing.value)
