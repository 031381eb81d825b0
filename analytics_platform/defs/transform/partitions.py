"""Daily partitions of the incremental facts: one partition per UTC day of event time.

``end_offset=1`` makes today a partition, so the freshness path can keep it current while the day
is still running.
"""

import dagster as dg

from analytics_platform.warehouse.refresh import PARTITIONS_START

DAILY_TAG = "daily"

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1, timezone="UTC")
