"""What operations adds to the code location: Dagster-native alerts, for teams without Prometheus.

The freshness checks of every asset that carries one of the platform's freshness policies, the sensor
that runs them, and the two alerting sensors (failed runs; stale raw tables and marts). Built from the
ingestion and transform definitions, so it is merged into the whole code location only.
"""

from __future__ import annotations

import functools

import dagster as dg

from analytics_platform.defs.operations.checks import freshness_checks, freshness_checks_sensor, freshness_windows
from analytics_platform.defs.operations.sensors import build_freshness_alert_sensor, run_failure_alert_sensor
from analytics_platform.settings import get_settings


@functools.cache
def operations_definitions() -> dg.Definitions:
    from analytics_platform.defs.ingestion.definitions import ingestion_definitions
    from analytics_platform.defs.transform.definitions import transform_definitions

    assets = [
        assets_def
        for definitions in (ingestion_definitions(), transform_definitions())
        for assets_def in definitions.assets or []
        if isinstance(assets_def, dg.AssetsDefinition)
    ]
    windows = freshness_windows(assets, get_settings())
    checks = freshness_checks(windows)
    return dg.Definitions(
        asset_checks=checks,
        sensors=[
            freshness_checks_sensor(checks),
            build_freshness_alert_sensor(windows, checks),
            run_failure_alert_sensor,
        ],
    )
