"""Complete SCD2 history from change logs: ``dbt snapshot`` repeated until nothing is pending.

A dbt snapshot records one version per key per run, so fed only the latest state it would skip every
version that came and went between two runs. The snapshots are fed the next uncaptured change per key
instead (the macro ``next_unsnapshotted_change``), so each ``dbt snapshot`` advances every key by one
version; repeating it until a round captures nothing makes the history complete however many versions
of a product one ingest batch carried.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
from pyiceberg.catalog import Catalog

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import TerminalError
from analytics_platform.lakehouse.snapshots import row_count
from analytics_platform.lakehouse.tables import open_raw_table
from analytics_platform.settings import Settings

SNAPSHOTS = ("snap_users", "snap_products")
REFERENCE_TYPES = ("user_profile_changed", "product_changed")
MAX_SNAPSHOT_ROUNDS = 1_000


def snapshot_rows(build: Path) -> int:
    """Rows in the SCD2 snapshot tables of a build (0 before the first snapshot)."""
    with duckdb.connect(str(build), read_only=True) as con:
        existing = {
            row[0]
            for row in con.execute("select table_name from duckdb_tables() where schema_name = 'snapshots'").fetchall()
        }
        total = 0
        for name in SNAPSHOTS:
            if name in existing:
                (count,) = con.execute(f"select count(*) from snapshots.{name}").fetchall()[0]
                total += int(count)
        return total


def has_reference_data(catalog: Catalog, settings: Settings) -> bool:
    """Whether any reference change landed; without any, the snapshot rounds are skipped."""
    tables = (open_raw_table(catalog, settings, event_types()[name]) for name in REFERENCE_TYPES)
    return any(table is not None and row_count(table) > 0 for table in tables)


def snapshot_until_complete(run_snapshot: Callable[[], None], build: Path, log: Callable[[str], None]) -> int:
    """Run ``dbt snapshot`` (``run_snapshot``) until a round captures nothing new; returns the rounds that
    captured versions."""
    rows = snapshot_rows(build)
    for round_number in range(MAX_SNAPSHOT_ROUNDS):
        run_snapshot()
        captured = snapshot_rows(build) - rows
        if captured == 0:
            return round_number
        log(f"snapshot round {round_number + 1}: {captured:,} new versions")
        rows += captured
    raise TerminalError(
        f"dbt snapshot still captured new versions after {MAX_SNAPSHOT_ROUNDS} rounds; is a change log looping? "
        "Check the changed_at ordering of the reference change models."
    )
