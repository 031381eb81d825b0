"""What every marts build does after it publishes: it sends the headline metrics to the compacted
``metrics.latest`` topic, where a consumer that keeps the last value per key (kafka-python, an outside
client) ends with the marts' values; and it writes every mart to Iceberg, where pyiceberg reads the same
rows as DuckDB does in the build."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka import KafkaConsumer, TopicPartition

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.local.orchestration import build_marts
from analytics_platform.serving.metrics_topic import MINUTES
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.iceberg_marts import BUILD_ID_KEY
from tests.helpers import produce

pytestmark = pytest.mark.integration


def last_value_per_key(settings: Settings) -> tuple[dict[str, dict], int]:
    """Read the topic from the start to its end; the last value of each key, and how many messages."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        partition = TopicPartition(settings.metrics_topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        latest: dict[str, dict] = {}
        read = 0
        while batch := consumer.poll(timeout_ms=3000):  # the embedded broker's end offset is unreliable
            for records in batch.values():
                for record in records:
                    latest[record.key.decode()] = json.loads(record.value)
                    read += 1
        return latest, read
    finally:
        consumer.close()


def expected_values(settings: Settings) -> tuple[dict[str, float], str]:
    """The headline values of the published build, queried here from the marts."""
    build = current_build(settings)
    assert build is not None
    expected: dict[str, float] = {}
    with duckdb.connect(str(build), read_only=True) as con:
        for day, dau, wau, mau in con.execute(
            "select activity_date, dau, wau, mau from marts.fct_daily_active_users"
        ).fetchall():
            expected |= {f"dau:day:{day}": dau, f"wau:day:{day}": wau, f"mau:day:{day}": mau}
        for day, revenue, arpu, arppu in con.execute(
            "select revenue_date, revenue_eur, arpu, arppu from marts.fct_revenue_daily"
        ).fetchall():
            expected |= {
                f"revenue_eur:day:{day}": float(revenue),
                f"arpu:day:{day}": float(arpu),
                f"arppu:day:{day}": float(arppu),
            }
        for day, rate in con.execute(
            "select activity_date, visit_to_purchase_rate from marts.fct_funnel_daily where category = 'all'"
        ).fetchall():
            expected[f"conversion_rate:day:{day}"] = float(rate)
        minutes: dict[datetime, int] = {}
        for minute, count in con.execute(
            "select event_minute, event_count from marts.fct_events_per_minute"
        ).fetchall():
            minutes[minute] = minutes.get(minute, 0) + count
        newest = max(minutes)
        expected |= {
            f"events:minute:{m.isoformat()}": n for m, n in minutes.items() if m > newest - timedelta(minutes=MINUTES)
        }
        revenue_minutes = dict(
            con.execute("select event_minute, revenue_eur from marts.fct_revenue_per_minute").fetchall()
        )
        newest = max(revenue_minutes)
        expected |= {
            f"revenue_eur:minute:{m.isoformat()}": float(v)
            for m, v in revenue_minutes.items()
            if m > newest - timedelta(minutes=MINUTES)
        }
    return expected, build.parent.name


def assert_iceberg_marts_equal_the_build(settings: Settings) -> None:
    build = current_build(settings)
    assert build is not None
    catalog = load_catalog(settings)
    with duckdb.connect(str(build), read_only=True) as con:
        names = [
            n for (n,) in con.execute("select table_name from duckdb_tables() where schema_name = 'marts'").fetchall()
        ]
        assert len(names) >= 10
        for name in names:
            table = catalog.load_table(f"{settings.marts_namespace}.{name}")
            assert table.current_snapshot().summary[BUILD_ID_KEY] == build.parent.name
            iceberg = table.scan().to_arrow()
            duck = con.execute(f"select * from marts.{name}").to_arrow_table()
            assert iceberg.num_rows == duck.num_rows, name
            columns = duck.column_names
            assert sorted(map(_row, iceberg.select(columns).to_pylist())) == sorted(map(_row, duck.to_pylist())), name


def _row(row: dict) -> str:
    """A row as comparable text: the same instant whichever name its time zone has (UTC, Etc/UTC)."""
    return repr([v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for v in row.values()])


def land_everything(settings: Settings) -> None:
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)


def test_each_build_sends_the_metrics_topic_and_writes_the_marts_to_iceberg(broker: Settings) -> None:
    produce(broker, 6_000, seed=21, days=2)
    land_everything(broker)
    build_marts(broker)

    expected, build_id = expected_values(broker)
    latest, read = last_value_per_key(broker)
    assert {key: record["value"] for key, record in latest.items()} == pytest.approx(expected)
    assert read == len(expected)  # one message per value: nothing sent twice
    assert {record["build"] for record in latest.values()} == {build_id}
    some_day = next(record for key, record in latest.items() if key.startswith("dau:day:"))
    assert some_day["grain"] == "day" and date.fromisoformat(some_day["bucket"])
    assert some_day["as_of"]["build"] == build_id and some_day["as_of"]["raw"]  # as the API says it
    assert_iceberg_marts_equal_the_build(broker)

    # More events for the same days, a new build: the changed values are sent again, the consumer's
    # last values are the new build's, and the topic is compacted so a new consumer needs only those.
    produce(broker, 3_000, seed=22, days=2)
    land_everything(broker)
    build_marts(broker)
    expected_now, build_now = expected_values(broker)
    latest, _ = last_value_per_key(broker)
    assert build_now != build_id
    assert {key: record["value"] for key, record in latest.items() if key in expected_now} == pytest.approx(
        expected_now
    )
    assert expected_now.keys() <= latest.keys()
    assert any(record["build"] == build_now for record in latest.values())
    assert_iceberg_marts_equal_the_build(broker)

    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, broker.metrics_topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=15)
    assert configs["cleanup.policy"].value == "compact"
