"""The Dagster instance the CLI, ``make dev`` and the demo share: ``<home>/dagster/dagster.yaml``.

Written from the settings on every start, so the instance always matches the environment: SQLite
storage by default, PostgreSQL when ``PLATFORM_DAGSTER_STORAGE_URL`` is set; runs launched at once
(no queue); run retries on, so a transient failure of an ingest run (tagged ``dagster/max_retries``)
is retried by the daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from dagster import DagsterInstance

from analytics_platform.settings import Settings


def instance_config(settings: Settings) -> dict[str, object]:
    config: dict[str, object] = {
        "telemetry": {"enabled": False},
        "run_retries": {"enabled": True},
        # Launch sensor runs at once: the queue daemon's polling adds ~15 s to every micro-batch.
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"},
    }
    if settings.dagster_storage_url:
        config["storage"] = {"postgres": {"postgres_url": settings.dagster_storage_url}}
    return config


def prepare_dagster_home(settings: Settings) -> Path:
    """Write ``dagster.yaml`` for these settings and export ``DAGSTER_HOME`` to child processes."""
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(settings), sort_keys=False))
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(settings: Settings) -> DagsterInstance:
    prepare_dagster_home(settings)
    return DagsterInstance.get()
