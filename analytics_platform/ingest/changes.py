"""Which event days new raw data touched: the days the daily facts must recompute after an ingest.

Found from Iceberg metadata and a pruned scan: the snapshots committed since a known one carry their
ingest time, and only the data files written since then are read (their ``ingested_at`` column
metrics exclude every older file). Late events and late reference changes land in old days; the range
covers them.
"""

from __future__ import annotations

from datetime import date

import pyarrow.compute as pc
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from analytics_platform.ingest.batch import INGESTED_AT_KEY


def event_days_since(table: Table, snapshot_id: int | None) -> tuple[date, date] | None:
    """(first, last) event day of the rows committed after ``snapshot_id`` (None: all rows), or None."""
    current = table.current_snapshot()
    if current is None or current.snapshot_id == snapshot_id:
        return None
    since: str | None = None
    if snapshot_id is not None:
        for snapshot in ancestors_of(current, table.metadata):
            if snapshot.snapshot_id == snapshot_id:
                break
            properties = snapshot.summary.additional_properties if snapshot.summary else {}
            if INGESTED_AT_KEY in properties:
                since = min(since or properties[INGESTED_AT_KEY], properties[INGESTED_AT_KEY])
        else:
            since = None  # the known snapshot is gone (table replaced or expired): look at everything
    scan = table.scan(row_filter=f"ingested_at >= '{since}'" if since else "true", selected_fields=("event_at",))
    event_at = scan.to_arrow().column("event_at")
    if len(event_at) == 0:
        return None
    bounds = pc.min_max(event_at)
    return bounds["min"].as_py().date(), bounds["max"].as_py().date()
