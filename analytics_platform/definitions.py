"""The one entry point Dagster loads (``workspace.yaml`` and ``pyproject.toml`` point here).

Nothing is built at import: Dagster calls :func:`defs` when it loads the code location, and only then
is the dbt manifest read (and parsed, if stale). ``analytics-platform ingest`` loads
:func:`ingestion_only`, which needs neither dbt nor the warehouse.
"""

from __future__ import annotations

import functools

import dagster as dg

from analytics_platform.defs.ingestion.definitions import ingestion_definitions
from analytics_platform.defs.quality.checks import raw_quality_checks
from analytics_platform.defs.resources import PlatformResource


def _shared() -> dg.Definitions:
    return dg.Definitions(
        resources={"platform": PlatformResource()},
        # Runs launched from the UI's Materialize button are one step too: a subprocess per step only adds seconds.
        executor=dg.in_process_executor,
    )


@functools.cache
def ingestion_only() -> dg.Definitions:
    """Topics, raw tables, ingest jobs and sensors: what landing Kafka into Iceberg needs."""
    return dg.Definitions.merge(ingestion_definitions(), _shared())


@functools.cache
def platform_definitions() -> dg.Definitions:
    """The whole code location: ingestion, raw quality checks, dbt, marts jobs, sensors, schedules and replays."""
    from analytics_platform.defs.maintenance.definitions import maintenance_definitions
    from analytics_platform.defs.operations.definitions import operations_definitions
    from analytics_platform.defs.quality.anomalies import anomaly_definitions
    from analytics_platform.defs.replays.jobs import replay_definitions
    from analytics_platform.defs.transform.definitions import transform_definitions

    return dg.Definitions.merge(
        ingestion_definitions(),
        dg.Definitions(asset_checks=[raw_quality_checks()]),
        transform_definitions(),
        replay_definitions(),
        operations_definitions(),  # Dagster-native alerts: freshness checks, alerting sensors
        maintenance_definitions(),  # compaction, snapshot expiry and orphan files, retention
        anomaly_definitions(),  # data-quality anomaly checks (warnings) and their hourly job
        _shared(),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return platform_definitions()
