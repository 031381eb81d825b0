"""The Dagster instance the CLI, ``make dev`` and the demo share: ``<home>/dagster/dagster.yaml``.

Written from the settings on every start, so the instance always matches the environment: SQLite
storage by default, PostgreSQL when ``PLATFORM_DAGSTER_STORAGE_URL`` is set; runs launched at once
(no queue); run monitoring on, with the launcher that reads the runs' heartbeats, so a run whose
worker died is failed within about a minute and its sensor requests the work again; run retries for
crashes of jobs that no sensor re-requests (a failed step has had its op retries already).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from dagster import DagsterInstance

from analytics_platform.defs.run_health import DEFAULT_HEARTBEAT_TIMEOUT_S
from analytics_platform.settings import Settings

# dagster.yaml names the variable instead of holding the URL: the file (which the webserver shows on its
# Configuration page) then holds no password.
STORAGE_URL_VARIABLE = "PLATFORM_DAGSTER_STORAGE_URL"
# How often the daemon checks started runs' heartbeats: with the heartbeat timeout, a dead run is
# failed within about 70 s, and its sensor (every 5 s) requests the work again.
MONITORING_POLL_S = 10


def instance_config(settings: Settings) -> dict[str, object]:
    config: dict[str, object] = {
        "telemetry": {"enabled": False},
        "run_retries": {"enabled": True, "retry_on_asset_or_op_failure": False},
        # Launch sensor runs at once: the queue daemon's polling adds ~15 s to every micro-batch.
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"},
        "run_launcher": {
            "module": "analytics_platform.defs.run_health",
            "class": "HeartbeatRunLauncher",
            "config": {"heartbeat_timeout_seconds": DEFAULT_HEARTBEAT_TIMEOUT_S},
        },
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": 180,
            "cancel_timeout_seconds": 180,
            "max_resume_run_attempts": 0,  # resuming needs a launcher that can restart a worker in place
            "poll_interval_seconds": MONITORING_POLL_S,
        },
    }
    if settings.dagster_storage_url:
        config["storage"] = {"postgres": {"postgres_url": {"env": STORAGE_URL_VARIABLE}}}
    return config


def prepare_dagster_home(settings: Settings) -> Path:
    """Write ``dagster.yaml`` for these settings and export ``DAGSTER_HOME`` (and the storage URL it names)
    to this process and its children."""
    home = settings.dagster_home_path
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(settings), sort_keys=False))
    os.environ["DAGSTER_HOME"] = str(home)
    if settings.dagster_storage_url:
        os.environ[STORAGE_URL_VARIABLE] = settings.dagster_storage_url
    return home


def get_instance(settings: Settings) -> DagsterInstance:
    prepare_dagster_home(settings)
    return DagsterInstance.get()
