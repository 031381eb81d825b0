"""Settings never show a password: a real command that reports its settings, run against the machine's
PostgreSQL with a password in every URL that can hold one, prints none and leaves none in the files it writes;
a real Dagster ingest run leaves none in its event log (Dagster's storage, dumped with pg_dump) or its files.

The server trusts local connections, so any password connects: what is checked is where it ends up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import ingestion_only
from analytics_platform.defs.ingestion.jobs import ingest_job_name
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import open_table
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings, get_settings
from tests.conftest import set_environment
from tests.helpers import counts_by_type, event_ids, free_port, produce

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "analytics-platform")


@pytest.fixture
def storage_password(postgres: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A password in the catalog's and Dagster's URLs and the alert webhook's."""
    password = f"pw{uuid.uuid4().hex}"
    url = postgres.replace("://postgres@", f"://postgres:{password}@")
    set_environment(
        monkeypatch,
        PLATFORM_CATALOG_URI=url,
        PLATFORM_DAGSTER_STORAGE_URL=url,
        PLATFORM_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hooks/{password}",
    )
    return password


@pytest.fixture
def password(storage_password: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """... and in the Schema Registry's, with a broker that is down."""
    set_environment(
        monkeypatch,
        PLATFORM_SCHEMA_REGISTRY_URL=f"http://registry:{storage_password}@127.0.0.1:{free_port()}",
        PLATFORM_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing listens: fails at once
    )
    return storage_password


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


def test_an_ingest_run_leaves_no_password_in_its_event_log(
    storage_password: str, postgres: str, broker: Settings, isolated_platform: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_INGEST_FOLLOW_S", "0")  # land what is there and end
    purchase = event_types()["purchase"]
    produced = produce(broker, 500, seed=5)
    instance = get_instance(broker)
    sensor = ingestion_only().resolve_sensor_def(f"ingest_{purchase.name}_sensor")
    with dg.build_sensor_context(instance=instance, resources={"platform": PlatformResource()}) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    job = ingestion_only().resolve_job_def(ingest_job_name(purchase))
    run = job.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags)
    assert run.success
    assert len(event_ids(broker, purchase.name)) == counts_by_type(produced)[purchase.name]  # it really landed

    database = postgres.rsplit("/", 1)[1]
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--host", "127.0.0.1", "--username", "postgres", database],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert run.run_id in dump and "STEP_SUCCESS" in dump  # the run's event log is in what was searched
    assert storage_password not in dump
    written = [path for path in isolated_platform.rglob("*") if path.is_file()]
    assert [path for path in written if storage_password.encode() in path.read_bytes()] == []
