"""Blocking asset checks on the raw tables: a failing one stops the marts build that would read them.

They run at the start of the ``build_marts`` job (one step evaluates all of them). Dagster wires a
blocking check of ``raw/<type>`` in front of every selected asset downstream of it, so when one fails
the dbt step does not start and the published marts stay as they were.
"""

from collections.abc import Iterator

import dagster as dg

from analytics_platform.defs.ingestion.assets import raw_asset_key
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.events import EVENT_TYPES
from analytics_platform.ingest.lakehouse import load_catalog
from analytics_platform.quality import CHECKS

DESCRIPTIONS = {
    "dead_letter_rate": "Recent dead letters (not replayed) stay under PLATFORM_MAX_DEAD_LETTER_RATE.",
    "unique_event_ids": "No event_id landed twice.",
    "required_fields_not_null": "Payload fields the row's schema version requires are not null.",
    "no_schema_drift": "Producers send no field the schema registry does not declare.",
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=raw_asset_key(event_type), blocking=True, description=DESCRIPTIONS[name])
        for event_type in EVENT_TYPES.values()
        for name in CHECKS
    ],
    can_subset=True,
)
def raw_quality_checks(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource
) -> Iterator[dg.AssetCheckResult]:
    settings = platform.settings()
    catalog = load_catalog(settings)
    for event_type in EVENT_TYPES.values():
        key = raw_asset_key(event_type)
        for name, check in CHECKS.items():
            if dg.AssetCheckKey(key, name) not in context.selected_asset_check_keys:
                continue
            outcome = check(catalog, settings, event_type)
            metadata = dict(outcome.metadata)
            if outcome.sample:
                metadata["sample"] = dg.MetadataValue.json(outcome.sample)
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=outcome.description,
                metadata=metadata,
            )
