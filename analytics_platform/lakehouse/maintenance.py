"""What every maintenance commit shares, and how ingestion commits alongside it.

Maintenance (compaction, moving old days to cold storage, retention) replaces or drops whole data files
of a raw table while ingestion keeps appending to it. Both use Iceberg's optimistic concurrency: a
commit names the snapshot it builds on and fails if the table moved meanwhile.

- A maintenance commit names exactly the files it replaces (never a row filter, which would also drop
  files appended meanwhile) and on a conflict reloads the table and commits again: a retry can only
  touch the files it read, whatever landed since.
- It repeats the newest Kafka offsets in its own summary (ingestion resumes from the newest snapshot
  that has them, and history is expired to a few dozen snapshots) and is marked with
  :data:`MAINTENANCE_KEY`. It records no ingest time, so lineage and "days touched since" skip it.
- An ingest append that failed only because maintenance committed first appends again on top of it
  (:func:`analytics_platform.lakehouse.ingest_commit.append_batch`): its offsets are still the newest,
  so this is not the blind retry that the raw tables refuse (``commit.retry.num-retries=0``). Against
  another writer of its own partitions it still fails, as before.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from analytics_platform.exceptions import TransientError
from analytics_platform.lakehouse.offsets import FINGERPRINTS_KEY, NEXT_OFFSETS_KEY, TOPIC_KEY
from analytics_platform.lakehouse.snapshots import properties
from analytics_platform.settings import Settings

MAINTENANCE_KEY = "maintenance.operation"  # compact, cold or retention
PARTITION_KEY = "maintenance.partition"  # the day partition it rewrote or dropped
CARRIED_KEYS = (TOPIC_KEY, NEXT_OFFSETS_KEY, FINGERPRINTS_KEY)
COMMIT_ATTEMPTS = 20


class FilesGoneError(Exception):
    """A file a maintenance commit replaces is no longer in the table (another maintenance run took it)."""


class MaintenanceConflictError(TransientError):
    """The table kept moving while a maintenance commit was retried; nothing was committed."""


def is_maintenance(snapshot: Snapshot) -> bool:
    return MAINTENANCE_KEY in properties(snapshot)


def carried_offsets(table: Table) -> dict[str, str]:
    """The offsets of the table's newest snapshot that has any, for a maintenance snapshot to repeat."""
    current = table.current_snapshot()
    if current is None:
        return {}
    for snapshot in ancestors_of(current, table.metadata):
        summary = properties(snapshot)
        if NEXT_OFFSETS_KEY in summary:
            return {key: summary[key] for key in CARRIED_KEYS if key in summary}
    return {}


def commit_replacement(
    table: Table,
    delete: Sequence[DataFile],
    add: Sequence[DataFile],
    operation: str,
    details: dict[str, str] | None = None,
) -> Snapshot:
    """Replace exactly the data files ``delete`` by ``add`` in one snapshot (``add`` may be empty: a drop).

    On a conflict the table is reloaded and the same files are committed again, up to COMMIT_ATTEMPTS
    times with a short random wait: a raw table is appended to every few seconds, a commit takes well
    under a second. The returned snapshot is the table's current one.

    Raises:
        FilesGoneError: a file of ``delete`` left the table meanwhile; nothing was committed.
        MaintenanceConflictError: the table kept moving; nothing was committed.
    """
    wanted = {data_file.file_path for data_file in delete}
    for attempt in range(COMMIT_ATTEMPTS):
        summary = {MAINTENANCE_KEY: operation, **(details or {}), **carried_offsets(table)}
        try:
            with (
                table.transaction() as transaction,
                transaction.update_snapshot(snapshot_properties=summary).overwrite() as overwrite,
            ):
                for data_file in delete:
                    overwrite.delete_data_file(data_file)
                for data_file in add:
                    overwrite.append_data_file(data_file)
        except (CommitFailedException, ValidationException):
            table.refresh()
            if not wanted <= live_paths(table):
                raise FilesGoneError(f"{'.'.join(table.name())}: a file to replace left the table meanwhile") from None
            time.sleep(random.uniform(0.05, 0.2) * min(attempt + 1, 5))
            continue
        snapshot = table.current_snapshot()
        assert snapshot is not None
        return snapshot
    raise MaintenanceConflictError(
        f"{'.'.join(table.name())} moved during each of {COMMIT_ATTEMPTS} attempts to commit the {operation}; "
        "nothing was committed. The next run tries again."
    )


def live_paths(table: Table) -> set[str]:
    """The paths of the data files of the table's current snapshot."""
    return {task.file.file_path for task in table.scan().plan_files()}


def table_name(table: Table) -> str:
    return ".".join(table.name())


def cold_data_path(settings: Settings, table: Table) -> str:
    """Where a table's cold partitions' files go: its own folder under PLATFORM_RAW_COLD_WAREHOUSE."""
    return f"{settings.cold_warehouse_uri}/{'/'.join(table.name())}/data"
