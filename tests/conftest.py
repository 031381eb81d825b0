"""Shared fixtures: an isolated platform home per test, a real broker, and the catalog backends.

Every test gets its own ``PLATFORM_HOME`` and ``DAGSTER_HOME`` (no developer state leaks in) and,
when it asks for ``broker``, its own embedded Tansu broker: it starts in ~50 ms and keeps its log in
memory, so a fresh one per test is cheaper than cleaning topics and makes offsets start at 0.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.settings import Settings, get_settings
from tests.helpers import free_port
from tests.landed import landed_marts  # noqa: F401  (a session fixture the mart and serving tests share)

POSTGRES_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
KINDS = ("fast", "integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test says what it needs: ``fast`` (pure logic, `make test-fast`) or ``integration`` (real parts)."""
    unmarked = [item.nodeid for item in items if sum(item.get_closest_marker(kind) is not None for kind in KINDS) != 1]
    if unmarked:
        raise pytest.UsageError(
            "mark each test module `pytestmark = pytest.mark.fast` (no broker, dbt or Dagster run) or "
            f"`pytest.mark.integration`; unmarked or marked twice: {unmarked[:5]}"
        )


def set_environment(patch: pytest.MonkeyPatch, **variables: str) -> None:
    """Set environment variables for one test only (restored afterwards)."""
    for name, value in variables.items():
        patch.setenv(name, value)


@pytest.fixture(autouse=True)
def isolated_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh platform home; every PLATFORM_* variable from the developer's shell is removed."""
    for name in list(os.environ):
        if name.startswith("PLATFORM_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    home = tmp_path / "platform"
    set_environment(
        monkeypatch, PLATFORM_HOME=str(home), PLATFORM_BROKER_PORT=str(free_port()), DAGSTER_HOME=str(home / "dagster")
    )
    return home


def _admin(statement: str, *parameters: str) -> None:
    """One statement on the server's admin database, on a connection of its own: a test may restart the
    server, which kills connections opened before."""
    with contextlib.closing(psycopg2.connect(POSTGRES_ADMIN_DSN)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement, parameters)


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database for both the Iceberg SQL catalog and Dagster's storage (the production
    shape); yields its SQLAlchemy URL and drops it afterwards."""
    database = f"ap_test_{uuid.uuid4().hex[:12]}"
    _admin(f'create database "{database}"')
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    set_environment(monkeypatch, PLATFORM_CATALOG_URI=url, PLATFORM_DAGSTER_STORAGE_URL=url)
    try:
        yield url
    finally:  # end pooled catalog/Dagster connections, then drop
        _admin("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", database)
        _admin(f'drop database if exists "{database}"')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test on the embedded default (SQLite) and on the production shape (PostgreSQL)."""
    if request.param == "postgres":
        request.getfixturevalue("postgres")
    return str(request.param)


@pytest.fixture
def broker() -> Iterator[Settings]:
    """A running embedded broker with the event topics created; yields the test's settings.

    Request ``backend`` before ``broker`` so the settings see the chosen catalog.
    """
    settings = get_settings()
    embedded_broker.start(settings)
    try:
        create_topics(settings, settings.topic_partitions)
        yield settings
    finally:
        embedded_broker.stop(settings)
