"""The data-quality anomaly checks as Dagster asset checks: warnings (WARN), never blocking.

Each check is attached to the asset whose data it judges (the per-hour events, the errors and the funnel
marts, the dead-letter model, the staging model of the watched nullable columns, each raw table for its
unknown fields), so the marts jobs run the marts' ones right after each build publishes. The job
``check_anomalies`` runs them all at five past every hour (schedule ``anomaly_checks_hourly``): the checks
of the raw tables run only there, so new unknown fields are reported even while the blocking
``no_schema_drift`` check holds the marts back. The logic is :mod:`analytics_platform.quality.anomalies`.
"""

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import duckdb

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.workloads import QUALITY
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.quality import anomalies
from analytics_platform.quality.anomalies import AnomalyOutcome
from analytics_platform.warehouse.connections import current_build

ANOMALY_JOB = "check_anomalies"
ANOMALY_SCHEDULE = "anomaly_checks_hourly"
UNKNOWN_FIELDS_CHECK = "new_unknown_fields"


@dataclass(frozen=True)
class MartCheck:
    """An anomaly check of the published build, attached to ``asset``."""

    name: str
    asset: dg.AssetKey
    description: str
    detect: Callable[[duckdb.DuckDBPyConnection], AnomalyOutcome]


MART_CHECKS = (
    MartCheck(
        "volume_anomaly",
        dg.AssetKey(["marts", "fct_events_per_hour"]),
        "Events per activity type in the last complete hour against the same hour of the previous 7 days: "
        "drops and spikes.",
        anomalies.volume,
    ),
    MartCheck(
        "error_spike",
        dg.AssetKey(["marts", "fct_errors_per_minute"]),
        "App errors in the last complete 15 minutes against the windows of the previous 24 hours.",
        anomalies.error_spike,
    ),
    MartCheck(
        "dead_letter_spike",
        dg.AssetKey(["operations", "ops_dead_letter_checks"]),
        "Dead letters (by the time their messages carry) in the last complete 15 minutes against the windows "
        "of the previous 24 hours.",
        anomalies.dead_letter_spike,
    ),
    MartCheck(
        "funnel_dip",
        dg.AssetKey(["marts", "fct_funnel_daily"]),
        "The shop's funnel completion (purchasers / visitors) on the last complete day against the previous 7.",
        anomalies.funnel_dip,
    ),
    MartCheck(
        "null_rate_drift",
        dg.AssetKey(["staging", "stg_user_visits"]),
        "Share of nulls of the watched nullable columns in the last complete hour against the previous 24.",
        anomalies.null_rate_drift,
    ),
)


def _result(key: dg.AssetKey, name: str, outcome: AnomalyOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata={
            name: value if isinstance(value, str | int | float) else dg.MetadataValue.json(value)
            for name, value in outcome.metadata().items()
        },
    )


@functools.cache
def anomaly_checks() -> dg.AssetChecksDefinition:
    """Every anomaly check in one step (a subset of them in the marts jobs)."""
    specs = [dg.AssetCheckSpec(check.name, asset=check.asset, description=check.description) for check in MART_CHECKS]
    specs += [
        dg.AssetCheckSpec(
            UNKNOWN_FIELDS_CHECK,
            asset=raw_asset_key(event_type),
            description="Undeclared fields the batches ingested in the last hour carried and those of the "
            "previous 7 days did not (a producer started sending a field no schema declares).",
        )
        for event_type in event_types().values()
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, retry_policy=TRANSIENT_RETRY)
    def anomaly_checks(
        context: dg.AssetCheckExecutionContext, platform: PlatformResource
    ) -> Iterator[dg.AssetCheckResult]:
        settings = platform.settings()
        selected = context.selected_asset_check_keys
        results = []
        with honest_failures(context.op_execution_context):
            marts = [check for check in MART_CHECKS if dg.AssetCheckKey(check.asset, check.name) in selected]
            if marts and current_build(settings) is None:
                nothing = AnomalyOutcome(True, "no marts published yet: nothing to judge", note="no build")
                results += [_result(check.asset, check.name, nothing) for check in marts]
            elif marts:
                with contextlib.closing(anomalies.connect(settings)) as con:
                    results += [_result(check.asset, check.name, check.detect(con)) for check in marts]
            raw = [
                t
                for t in event_types().values()
                if dg.AssetCheckKey(raw_asset_key(t), UNKNOWN_FIELDS_CHECK) in selected
            ]
            if raw:
                catalog = load_catalog(settings)
                for event_type in raw:
                    outcome = anomalies.new_unknown_fields(catalog, settings, event_type)
                    results.append(_result(raw_asset_key(event_type), UNKNOWN_FIELDS_CHECK, outcome))
        yield from results

    return anomaly_checks


@functools.cache
def anomaly_definitions() -> dg.Definitions:
    """The checks, the job that runs them all and its hourly schedule."""
    checks = anomaly_checks()
    job = dg.define_asset_job(
        ANOMALY_JOB,
        selection=dg.AssetSelection.checks(checks),
        executor_def=dg.in_process_executor,
        tags=QUALITY.tags(),
        description="Every data-quality anomaly check (warnings: they never block anything).",
    )
    schedule = dg.ScheduleDefinition(
        name=ANOMALY_SCHEDULE,
        job=job,
        cron_schedule="5 * * * *",  # the last complete hour, with five minutes for its late events to land
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(asset_checks=[checks], jobs=[job], schedules=[schedule])
