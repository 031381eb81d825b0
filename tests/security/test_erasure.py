"""Erasing a user through the real platform: broker, Iceberg, dbt through Dagster, the published build.

After ``erase_user`` no byte of the user's id is left in any file under the lake (data files of every
snapshot, manifests, orphans), in the dead letters or in the published marts; every other user's numbers
are what the generated events say; the audit table has the entry; and ingestion lands exactly the events
produced afterwards (the erasure's snapshots repeated the Kafka offsets).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import avro.datafile
import avro.io
import duckdb
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import read_dead_letters
from analytics_platform.local.orchestration import build_marts
from analytics_platform.security.erasure import AUDIT_NAMESPACE, AUDIT_TABLE, erase_user
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import generate_dataset, generate_events
from analytics_platform.warehouse.connections import current_build
from tests.helpers import landed, produce_events

pytestmark = pytest.mark.integration

EVENTS, DAYS, SEED = 3_000, 2, 11


def _user_events(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((event["user_id"], event["event_type"]) for event in events)


def _landed_by_user(settings: Settings) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for name in event_types():
        counts.update((user, name) for user in landed(settings, name).column("user_id").to_pylist())
    return counts


def _send_dead_letters(settings: Settings, user_id: str, other: str) -> None:
    """Two of the user's dead letters (keyed by the id; unkeyed with the id inside) and one of another user."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    topic = "events.user_visit"
    producer.produce(topic, value=b"{not json", key=user_id.encode(), partition=0)
    producer.produce(topic, value=b'{"user_id": "%s", broken' % user_id.encode(), partition=0)
    producer.produce(topic, value=b'{"user_id": "%s", broken' % other.encode(), key=other.encode(), partition=0)
    assert producer.flush(10) == 0


def _ingest(settings: Settings) -> None:
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)


def _files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose content holds ``needle``: Parquet decoded (values are compressed),
    Avro manifests decoded (column bounds), anything else as bytes."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            text = str(pq.read_table(path).to_pylist())
        elif path.suffix == ".avro":
            with path.open("rb") as stream, avro.datafile.DataFileReader(stream, avro.io.DatumReader()) as reader:
                text = str(list(reader))
        else:
            text = path.read_bytes().decode("latin-1")
        if needle in text:
            found.append(str(path))
    return found


def _marts_holding(build: Path, needle: str) -> list[str]:
    found = []
    with duckdb.connect(str(build), read_only=True) as con:
        columns = con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() c join duckdb_tables() t "
            "using (database_name, schema_name, table_name) where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            sql = f'select count(*) from "{schema}"."{table}" where contains("{column}", ?)'
            if (con.execute(sql, [needle]).fetchone() or (0,))[0]:
                found.append(f"{schema}.{table}.{column}")
    return found


def _query(build: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(build), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_an_erased_user_leaves_no_trace_and_nobody_else_changes(broker: Settings) -> None:
    settings = broker
    dataset = generate_dataset(EVENTS, seed=SEED, days=DAYS, late_fraction=0.0)
    produce_events(settings, dataset.events)
    by_user = _user_events(dataset.events)
    activity = Counter(e["user_id"] for e in dataset.events if e["event_type"] != "user_profile_changed")
    purchasers = {e["user_id"] for e in dataset.events if e["event_type"] == "purchase"}
    erased = max((u for u in purchasers), key=lambda u: (activity[u], u))
    other = next(u for u, _ in activity.most_common() if u != erased and u in purchasers)
    _send_dead_letters(settings, erased, other)
    _ingest(settings)
    build_marts(settings)
    before = current_build(settings)
    assert before is not None
    assert _marts_holding(before, erased), "the user is in the marts before the erasure"
    warehouse = Path(settings.warehouse_uri.removeprefix("file://"))
    assert [p for p in _files_holding(warehouse, erased) if p.endswith(".parquet")], "and in the lake's files"
    sessions_sql = (
        "select user_id, count(*), sum(event_count), count(*) filter (where has_purchase) "
        "from marts.fct_sessions group by 1 order by 1"
    )
    sessions_before = {row[0]: row[1:] for row in _query(before, sessions_sql)}
    users_before = _query(before, f"select * from marts.dim_users where user_id != '{erased}' order by user_id")
    dau_sql = "select activity_date, dau from marts.fct_daily_active_users order by 1"
    dau_before = dict(_query(before, dau_sql))
    erased_days = {
        e["timestamp"][:10]
        for e in dataset.events
        if e["user_id"] == erased and e["event_type"] != "user_profile_changed"
    }

    report = erase_user(settings, erased, requested_by="dpo@example.com", progress=lambda _: None)

    # Raw tables and dead letters: the user's rows are gone, everybody else's are exactly what was produced.
    expected = Counter({key: n for key, n in by_user.items() if key[0] != erased})
    assert _landed_by_user(settings) == expected
    assert report.raw_rows_deleted == sum(n for (user, _), n in by_user.items() if user == erased) + 2
    catalog = load_catalog(settings)
    letters = read_dead_letters(catalog, settings).to_pylist()
    assert not [r for r in letters if erased.encode() in (r["kafka_key"] or b"") + (r["raw_value"] or b"")]
    assert [r for r in letters if r["kafka_key"] == other.encode()], "another user's dead letter stays"

    # No file of the lake holds the id: data files of any snapshot, manifests' column bounds, orphans.
    assert not _files_holding(warehouse, erased)

    # The published marts: no trace, no older build left on disk, every other user unchanged.
    after = current_build(settings)
    assert after is not None and after != before
    assert not _marts_holding(after, erased)
    assert [p for p in (settings.duckdb_path / "builds").glob("*/warehouse.duckdb")] == [after]
    sessions_after = {row[0]: row[1:] for row in _query(after, sessions_sql)}
    assert sessions_after == {user: row for user, row in sessions_before.items() if user != erased}
    assert _query(after, "select * from marts.dim_users order by user_id") == users_before
    dau_after = dict(_query(after, dau_sql))
    assert dau_after == {day: n - (day.isoformat() in erased_days) for day, n in dau_before.items()}

    # The audit entry.
    audit = catalog.load_table(f"{AUDIT_NAMESPACE}.{AUDIT_TABLE}").scan().to_arrow().to_pylist()
    assert len(audit) == 1
    entry = audit[0]
    assert entry["requested_by"] == "dpo@example.com" and entry["erasure_id"] == report.erasure_id
    assert sum(json.loads(entry["rows_deleted"]).get(f"raw.{t}", 0) for t in event_types()) == sum(
        n for (user, _), n in by_user.items() if user == erased
    )
    assert json.loads(entry["snapshots_expired"]) and entry["files_deleted"] > 0
    assert erased not in str(entry)

    # Ingestion resumes where it was: exactly the new events land, none of the old ones again.
    more = [e for e in generate_events(300, seed=SEED + 1, days=1) if e["user_id"] != erased]
    produce_events(settings, more)
    _ingest(settings)
    assert _landed_by_user(settings) == expected + _user_events(more)
