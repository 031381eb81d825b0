"""The operations models equal what the Iceberg tables themselves say, read with pyiceberg (not DuckDB).

The session's landed marts hold every generated event and a few bad messages (``BAD_MESSAGES``); nothing
was ingested after the build, so the build read the tables' current snapshots. Each test recomputes a
model from the tables' rows or snapshot summaries and compares the full sorted row lists. Edge rules the
data cannot reach (a minute with only dead letters, a snapshot both kept and recorded as expired) are in
the dbt unit tests of ``models/operations``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime

import pyarrow as pa
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, RUN_ID_KEY, properties
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, LINEAGE_TABLE, open_table
from tests.landed import BAD_MESSAGES, LandedMarts

pytestmark = pytest.mark.integration


def _rows(landed_marts: LandedMarts, name: str, *columns: str) -> pa.Table:
    table = open_table(load_catalog(landed_marts.settings), landed_marts.settings, name)
    return table.scan(selected_fields=columns).to_arrow()


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def test_landings_per_minute_count_every_row_and_dead_letter(landed_marts: LandedMarts) -> None:
    expected: dict[tuple[datetime, str], list] = defaultdict(lambda: [0, 0, None, None])
    for name in event_types():
        rows = _rows(landed_marts, name, "event_at", "ingested_at")
        for event_at, ingested_at in zip(
            rows.column("event_at").to_pylist(), rows.column("ingested_at").to_pylist(), strict=True
        ):
            row = expected[(_minute(ingested_at), name)]
            row[0] += 1
            row[2] = max(row[2] or event_at, event_at)
            row[3] = max(row[3] or ingested_at, ingested_at)
    letters = _rows(landed_marts, DEAD_LETTER_TABLE, "kafka_topic", "ingested_at").to_pylist()
    for letter in letters:
        expected[(_minute(letter["ingested_at"]), letter["kafka_topic"].removeprefix("events."))][1] += 1
    got = landed_marts.query(
        "select landed_minute, event_type, events_landed, dead_letters, newest_event_at, newest_ingested_at "
        "from operations.ops_landings_per_minute order by 1, 2"
    )
    assert got == sorted((minute, name, *row) for (minute, name), row in expected.items())
    assert Counter(letter["kafka_topic"] for letter in letters) == Counter(BAD_MESSAGES)


def test_dead_letter_checks_count_each_failed_check(landed_marts: LandedMarts) -> None:
    letters = _rows(landed_marts, DEAD_LETTER_TABLE, "kafka_topic", "failed_checks").to_pylist()
    expected = Counter(
        (letter["kafka_topic"].removeprefix("events."), check)
        for letter in letters
        for check in letter["failed_checks"]
    )
    got = landed_marts.query(
        "select event_type, failed_check, dead_letters from operations.ops_dead_letter_checks order by 1, 2"
    )
    assert got == sorted((name, check, count) for (name, check), count in expected.items())
    assert len(got) > 1


def test_raw_freshness_is_the_newest_rows_seen_from_the_build(landed_marts: LandedMarts) -> None:
    expected = []
    for name in event_types():
        rows = _rows(landed_marts, name, "event_at", "ingested_at")
        newest_event = max(rows.column("event_at").to_pylist())
        newest_ingest = max(rows.column("ingested_at").to_pylist())
        expected.append((name, rows.num_rows, newest_event, newest_ingest))
    got = landed_marts.query(
        "select table_name, rows_landed, newest_event_at, newest_ingested_at, built_at, event_lag_s, ingest_lag_s "
        "from operations.ops_raw_freshness order by 1"
    )
    assert [row[:4] for row in got] == sorted(expected)
    for _, _, newest_event, newest_ingest, built_at, event_lag_s, ingest_lag_s in got:
        assert event_lag_s == pytest.approx((built_at - newest_event).total_seconds(), abs=1e-6)
        assert 0 < ingest_lag_s == pytest.approx((built_at - newest_ingest).total_seconds(), abs=1e-6)


def test_ingest_runs_cover_every_commit_kept_or_expired(landed_marts: LandedMarts) -> None:
    settings = landed_marts.settings
    catalog = load_catalog(settings)
    commits: dict[tuple[str, int], tuple[str | None, int]] = {}
    for name in event_types():
        for snapshot in open_table(catalog, settings, name).snapshots():
            props = properties(snapshot)
            if INGESTED_AT_KEY in props:
                commits[(name, snapshot.snapshot_id)] = (props.get(RUN_ID_KEY), int(props["added-records"]))
    try:
        recorded = open_table(catalog, settings, LINEAGE_TABLE).scan().to_arrow().to_pylist()
    except TableNotFoundError:  # nothing expired yet
        recorded = []
    for row in recorded:
        added = int(json.loads(row["summary"])["added-records"])
        commits.setdefault((row["table_name"].split(".")[-1], row["snapshot_id"]), (row["run_id"], added))
    expected: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for (name, _), (run_id, added) in commits.items():
        expected[(name, run_id)][0] += 1
        expected[(name, run_id)][1] += added
    got = landed_marts.query("select table_name, run_id, commits, rows_landed from operations.ops_ingest_runs")
    assert sorted(got, key=str) == sorted(((n, r, c, a) for (n, r), (c, a) in expected.items()), key=str)
    totals: Counter[str] = Counter()
    for name, _, _, rows in got:
        totals[name] += rows
    assert totals == Counter({name: _rows(landed_marts, name, "event_id").num_rows for name in event_types()})
