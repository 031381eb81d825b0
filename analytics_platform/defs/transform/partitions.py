"""Daily partitions of the incremental facts: one partition per UTC day of event time.

The start covers the synthetic data's history (reference data starts four weeks before the
generator's default start); a deployment with older events moves it back. ``end_offset=1`` makes
today a partition, so the freshness path can keep it current while the day is still running.
"""

import dagster as dg

DAILY_TAG = "daily"
PARTITIONS_START = "2026-10-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")
