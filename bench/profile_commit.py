"""Why the raw commit creeps, and that it no longer does: N small appends into one raw table.

    python bench/profile_commit.py [--commits N] [--rows R] [--compact-every C] [--fast-append] [--pyinstrument]

Creates ``raw.user_visit`` the platform's way (``ensure_raw_table`` on the SQL catalog in a temporary home)
and commits N micro-batches of R rows exactly as a following ingest run does: read the stored offsets,
append the rows with their offsets in the snapshot summary, expire old snapshots (recording them in
``raw.ingest_snapshots`` first). Every 50 commits it prints the median and max seconds of the append (what
the ingest run reports as ``commit``), the median CPU seconds of the append (this process, all threads: what
other processes on the machine do not change), the median seconds of the expiry, and what the table's
metadata then holds: manifests in the current snapshot, live data files, snapshots, the metadata JSON's size.

``--compact-every C`` runs compaction (``compact_table``, what the scheduled job and the small-files sensor run)
after every C commits, as the soak interleaves it with ingestion: what it leaves behind is in the next commits.
``--fast-append`` switches manifest merging off again (the table properties before the fix), to compare;
``--snapshots-kept 50`` keeps as many snapshots as before the fix.
``--pyinstrument`` profiles the last 50 commits and prints the call tree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, isolate  # noqa: E402

TOPIC = "events.user_visit"
EVERY = 50


def _rows(schema: Any, batch: int, rows: int, now: datetime) -> Any:
    """``rows`` user visits of one micro-batch: mostly today, one in ten late (yesterday), as a live stream."""
    import pyarrow as pa

    records = []
    for index in range(rows):
        late = index % 10 == 0
        records.append(
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "user_visit",
                "event_at": now - timedelta(days=1 if late else 0, seconds=index),
                "source": "web",
                "user_id": f"u{index % 500}",
                "session_id": f"s{batch}-{index % 50}",
                "correlation_id": str(uuid.uuid4()),
                "schema_version": 1,
                "payload": None,
                "ingested_at": now,
                "kafka_topic": TOPIC,
                "kafka_partition": index % 3,
                "kafka_offset": batch * rows + index,
            }
        )
    return pa.Table.from_pylist(records, schema=schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=300, help="rows per commit (2,000 events/s over 6 topics, 1 s)")
    parser.add_argument(
        "--fast-append", action="store_true", help="manifest merging off: the properties before the fix"
    )
    parser.add_argument(
        "--previous-versions-max", type=int, help="write.metadata.previous-versions-max (the table's setting if unset)"
    )
    parser.add_argument("--compact-every", type=int, help="compact the table after every this many commits")
    parser.add_argument("--pyinstrument", action="store_true", help="profile the last 50 commits")
    parser.add_argument("--snapshots-kept", type=int, help="PLATFORM_RAW_SNAPSHOTS_KEPT (default: the setting's)")
    args = parser.parse_args()

    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.compaction import compact_table
    from analytics_platform.lakehouse.lineage import record_before_expiry
    from analytics_platform.lakehouse.offsets import offsets_properties, stored_offsets
    from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, expire_old_snapshots
    from analytics_platform.lakehouse.tables import ensure_raw_table
    from analytics_platform.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="bench-commit-") as home:
        isolate(Path(home), free_port())
        settings = get_settings()
        if args.snapshots_kept is not None:
            settings = settings.model_copy(update={"raw_snapshots_kept": args.snapshots_kept})
        catalog = load_catalog(settings)
        table = ensure_raw_table(catalog, settings, event_types()["user_visit"])
        if args.fast_append:
            with table.transaction() as transaction:
                transaction.set_properties({"commit.manifest-merge.enabled": "false"})
        if args.previous_versions_max is not None:
            with table.transaction() as transaction:
                transaction.set_properties({"write.metadata.previous-versions-max": str(args.previous_versions_max)})
        print(f"table properties: {dict(sorted(table.properties.items()))}")
        schema = table.schema().as_arrow()
        appends: list[float] = []
        cpu: list[float] = []
        expiries: list[float] = []
        profiler = None
        print(
            f"{'commits':>7} {'append med s':>12} {'append max s':>12} {'append cpu s':>12} {'expire med s':>12} "
            f"{'manifests':>9} "
            f"{'data files':>10} {'snapshots':>9} {'metadata KB':>11}"
        )
        for batch in range(args.commits):
            if args.pyinstrument and batch == args.commits - EVERY:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001)
                profiler.start()
            now = datetime.now(UTC)
            rows = _rows(schema, batch, args.rows, now)
            clock, cpu_clock = time.perf_counter(), time.process_time()
            stored = stored_offsets(table, TOPIC)
            next_offsets = {p: stored.next_offset(p) + args.rows // 3 for p in range(3)}
            properties = offsets_properties(TOPIC, dict(stored.next_offsets), next_offsets, {})
            properties[INGESTED_AT_KEY] = now.isoformat()
            table.append(rows, snapshot_properties=properties)
            appends.append(time.perf_counter() - clock)
            cpu.append(time.process_time() - cpu_clock)
            clock = time.perf_counter()
            expire_old_snapshots(
                table,
                settings.raw_snapshots_kept,
                lambda expiring: record_before_expiry(catalog, settings, table, expiring),
            )
            expiries.append(time.perf_counter() - clock)
            if args.compact_every and (batch + 1) % args.compact_every == 0:
                compacted = compact_table(settings, table, datetime.now(UTC), progress=lambda _: None)
                if compacted:
                    print(f"{batch + 1:>7} compacted {sum(r.files_before for r in compacted)} files")
            if (batch + 1) % EVERY == 0:
                snapshot = table.current_snapshot()
                assert snapshot is not None
                manifests = len(snapshot.manifests(table.io))
                files = int(snapshot.summary.get("total-data-files") or 0) if snapshot.summary else 0
                metadata_kb = Path(table.metadata_location.removeprefix("file://")).stat().st_size / 1024
                window = slice(-EVERY, None)
                print(
                    f"{batch + 1:>7} {statistics.median(appends[window]):>12.3f} {max(appends[window]):>12.3f} "
                    f"{statistics.median(cpu[window]):>12.3f} "
                    f"{statistics.median(expiries[window]):>12.3f} {manifests:>9} {files:>10} "
                    f"{len(table.snapshots()):>9} {metadata_kb:>11.0f}"
                )
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=True))


if __name__ == "__main__":
    main()
