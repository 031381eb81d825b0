"""Everything ingestion adds to the code location: topics, raw tables, their jobs and sensors.

Needs neither dbt nor the warehouse, so ``analytics-platform ingest`` loads only this.
"""

import functools

import dagster as dg

from analytics_platform.contracts.envelope import event_types
from analytics_platform.defs.ingestion.assets import build_raw_asset, dead_letter_spec, topic_spec
from analytics_platform.defs.ingestion.jobs import ingest_job
from analytics_platform.defs.ingestion.sensors import build_ingest_sensor


@functools.cache
def ingestion_definitions() -> dg.Definitions:
    types = list(event_types().values())
    return dg.Definitions(
        assets=[*(topic_spec(t) for t in types), dead_letter_spec(), *(build_raw_asset(t) for t in types)],
        jobs=[ingest_job(t) for t in types],
        sensors=[build_ingest_sensor(t) for t in types],
    )
