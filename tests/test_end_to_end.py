"""Generated stream -> sensor ticks -> Dagster runs -> Iceberg -> dbt build through Dagster -> marts.

Everything is real: the embedded broker, Iceberg tables, Dagster runs recorded on a persistent
instance (SQLite or PostgreSQL storage), dbt-duckdb. The expected metrics are recomputed here in
plain Python from the generated events, independently of the SQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from analytics_platform.definitions import ingestion_only
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import NEXT_OFFSETS_KEY
from analytics_platform.lakehouse.snapshots import RUN_ID_KEY, properties
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import build_marts, tick_ingest_sensors
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import ACTIVITY_TYPES
from analytics_platform.warehouse import connections
from tests.helpers import counts_by_type, event_ids, produce

pytestmark = pytest.mark.integration


def parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def test_sensors_ingest_then_dbt_marts_equal_independent_computation(
    backend: str, broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_RUN_MAX_EVENTS", "6000")  # several runs per busy topic,
    monkeypatch.setenv("PLATFORM_BATCH_MAX_EVENTS", "2500")  # several micro-batches per run
    settings = get_settings()
    events = produce(settings, 20_000, seed=11, days=2)
    instance = get_instance(settings)
    assert (
        type(instance.run_storage).__name__ == {"sqlite": "SqliteRunStorage", "postgres": "PostgresRunStorage"}[backend]
    )

    runs = []
    while ticked := tick_ingest_sensors(settings, instance):
        runs.extend(ticked)
    assert all(run.success for run in runs)
    assert len(runs) >= 6  # user_visit alone needs 3 batches of <= 6,000
    assert len({run.run_key for run in runs}) == len(runs)
    for event_type, count in counts_by_type(events).items():
        ids = event_ids(settings, event_type)
        assert len(ids) == len(set(ids)) == count
    # Every ingest snapshot names the Dagster run that committed it (the API's drill-down links to it),
    # and that run is one of the sensors' runs.
    sensor_runs = {record.dagster_run.run_id for record in instance.get_run_records()}
    catalog = load_catalog(settings)
    for event_type in counts_by_type(events):
        table = catalog.load_table(f"raw.{event_type}")
        landed_by = {properties(s).get(RUN_ID_KEY) for s in table.snapshots() if NEXT_OFFSETS_KEY in properties(s)}
        assert landed_by and landed_by <= sensor_runs, (event_type, landed_by)

    build_marts(settings)
    with connections.connect_marts(settings) as con:
        dau = dict(con.execute("select activity_date, dau from marts.fct_daily_active_users").fetchall())
        per_minute = {
            (minute.astimezone(UTC), event_type): count
            for minute, event_type, count in con.execute(
                "select event_minute, event_type, event_count from marts.fct_events_per_minute"
            ).fetchall()
        }

    users_per_day: dict[date, set[str]] = defaultdict(set)
    expected_per_minute: Counter[tuple[datetime, str]] = Counter()
    for event in events:
        if event["event_type"] not in ACTIVITY_TYPES:  # app errors are not activity (they have a mart of their own)
            continue
        moment = parse(event["timestamp"])
        users_per_day[moment.date()].add(event["user_id"])
        expected_per_minute[(moment.replace(second=0, microsecond=0), event["event_type"])] += 1
    assert dau == {day: len(users) for day, users in users_per_day.items()}
    assert per_minute == dict(expected_per_minute)


def test_sensor_run_key_is_the_offset_range_and_in_flight_runs_hold_the_sensor(broker: Settings) -> None:
    produce(broker, 2_000)
    instance = get_instance(broker)
    sensor = ingestion_only().resolve_sensor_def("ingest_purchase_sensor")

    def evaluate() -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources={"platform": PlatformResource()}) as context:
            return sensor(context)

    first, again = evaluate(), evaluate()
    assert first.run_requests and again.run_requests
    assert first.run_requests[0].run_key == again.run_requests[0].run_key  # a re-evaluated tick asks for the same batch
    assert first.run_requests[0].run_key.startswith("events.purchase|0:0-")

    # A run of the topic in flight: the sensor waits instead of planning an overlapping batch.
    instance.create_run_for_job(
        job_def=dg.Definitions(
            assets=[dg.AssetSpec("x")], jobs=[dg.define_asset_job(sensor.job_name, "*")]
        ).resolve_job_def(sensor.job_name),
        status=dg.DagsterRunStatus.STARTED,
    )
    held = evaluate()
    assert not held.run_requests and "is landing events.purchase" in (held.skip_reason.skip_message or "")
