"""The raw tables' checks as Dagster asset checks: blocking ones stop the marts build that would read them.

Dagster wires a blocking check of ``raw/<type>`` in front of every selected asset downstream of it, so
when one fails in a job that publishes marts the dbt step does not start and the published marts stay
as they were. Warnings (``blocking=False``) show in the UI and never stop anything. One step evaluates
all of them.
"""

import functools
from collections.abc import Iterator

import dagster as dg

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.quality.checks import CHECKS


@functools.cache
def raw_quality_checks() -> dg.AssetChecksDefinition:
    """Every check of :data:`analytics_platform.quality.checks.CHECKS` on every raw table, in one step."""

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                check.name, asset=raw_asset_key(event_type), blocking=check.blocking, description=check.description
            )
            for event_type in event_types().values()
            for check in CHECKS
        ],
        can_subset=True,
        retry_policy=TRANSIENT_RETRY,
    )
    def raw_table_checks(
        context: dg.AssetCheckExecutionContext, platform: PlatformResource
    ) -> Iterator[dg.AssetCheckResult]:
        settings = platform.settings()
        with honest_failures(context.op_execution_context):
            catalog = load_catalog(settings)
            results = []
            for event_type in event_types().values():
                key = raw_asset_key(event_type)
                for check in CHECKS:
                    if dg.AssetCheckKey(key, check.name) not in context.selected_asset_check_keys:
                        continue
                    outcome = check.run(catalog, settings, event_type)
                    metadata = dict(outcome.metadata)
                    if outcome.sample:
                        metadata["sample"] = dg.MetadataValue.json(outcome.sample)
                    severity = dg.AssetCheckSeverity.ERROR if check.blocking else dg.AssetCheckSeverity.WARN
                    results.append(
                        dg.AssetCheckResult(
                            asset_key=key,
                            check_name=check.name,
                            passed=outcome.passed,
                            severity=severity,
                            description=outcome.description,
                            metadata=metadata,
                        )
                    )
        yield from results

    return raw_table_checks
