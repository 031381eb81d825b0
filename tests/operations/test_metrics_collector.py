"""The collector's figures against a real broker, Iceberg tables, Dagster storage and a published marts build;
every expected number is computed here from what was produced and what the tables hold."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime

import dagster as dg
import pyarrow.compute as pc
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from analytics_platform.contracts.envelope import encode_event, event_types
from analytics_platform.defs.ingestion.jobs import TOPIC_TAG, ingest_job_name, ingest_run_config
from analytics_platform.ingest.land import BatchResult, land_batch
from analytics_platform.ingest.plan import BatchPlan
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, open_table
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import ingest_through_dagster
from analytics_platform.operations.exporter import platform_registry
from analytics_platform.operations.metrics import LATENCY_BUCKETS
from analytics_platform.serving.api.app import create_app
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import generate_events
from tests.landed import LandedMarts

pytestmark = pytest.mark.integration

TOPIC, EVENT_TYPE = "events.add_to_cart", "add_to_cart"
NOW = time.time() + 1_000.0  # the collector's clock: every age below is exact
FIRST_MS = {0: int((NOW - 3_600) * 1_000), 1: int((NOW - 3_000) * 1_000), 2: int((NOW - 2_400) * 1_000)}
# Partition 0 carries three messages that cannot land, at these offsets.
BAD = {5: b"{not json", 6: None, 22: b"\xff\xfe"}
FOLLOW_S = 6.0  # how long the following run follows after landing its batch
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry).decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def ours(partition: int | None = None) -> dict[str, str]:
    labels = {"topic": TOPIC, "event_type": EVENT_TYPE}
    return labels if partition is None else labels | {"partition": str(partition)}


def produce(settings: Settings) -> None:
    """30 messages on partition 0 (three bad), 20 on 1, 4 on 2; message i of partition p is stamped
    FIRST_MS[p] + i seconds."""
    carts = iter(encode_event(e) for e in generate_events(1_000, seed=11) if e["event_type"] == EVENT_TYPE)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for partition, count in ((0, 30), (1, 20), (2, 4)):
        for offset in range(count):
            message = BAD[offset] if partition == 0 and offset in BAD else next(carts)
            producer.produce(TOPIC, value=message, partition=partition, timestamp=FIRST_MS[partition] + 1_000 * offset)
    assert producer.flush(10) == 0


def produce_more(settings: Settings, partition: int, count: int) -> None:
    """``count`` more carts on ``partition``, stamped on from where :func:`produce` left off."""
    carts = [encode_event(e) for e in generate_events(200, seed=12) if e["event_type"] == EVENT_TYPE][:count]
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    first = {0: 30, 1: 20, 2: 4}[partition]
    for index, message in enumerate(carts, start=first):
        producer.produce(TOPIC, value=message, partition=partition, timestamp=FIRST_MS[partition] + 1_000 * index)
    assert producer.flush(10) == 0


def run_ingest_job(settings: Settings, follow_s: float) -> dg.ExecuteInProcessResult:
    """The topic's ingest job, as its sensor launches it (planning at start), following for ``follow_s``."""
    from analytics_platform.definitions import ingestion_only

    event_type = event_types()[EVENT_TYPE]
    job = ingestion_only().resolve_job_def(ingest_job_name(event_type))
    result = job.execute_in_process(
        run_config=ingest_run_config(event_type, None, follow_s=follow_s), instance=get_instance(settings)
    )
    assert result.success
    return result


def lake(settings: Settings) -> tuple[list[dict], list[dict]]:
    catalog = load_catalog(settings)
    rows = open_table(catalog, settings, EVENT_TYPE).scan(selected_fields=("event_at", "ingested_at")).to_arrow()
    dead = open_table(catalog, settings, DEAD_LETTER_TABLE).scan().to_arrow()
    return rows.to_pylist(), dead.to_pylist()


def commit_ms(settings: Settings, batch: BatchResult) -> int:
    table = open_table(load_catalog(settings), settings, EVENT_TYPE)
    snapshot = table.snapshot_by_id(batch.snapshot_id or 0)
    assert snapshot is not None
    return snapshot.timestamp_ms


def check_lake_figures(samples: Samples, settings: Settings, latencies: list[float]) -> None:
    """Rows, dead letters by check, freshness, data files and the latency histogram, from the tables."""
    rows, dead = lake(settings)
    assert value(samples, "analytics_platform_landed_rows_total", **ours()) == len(rows)
    assert value(samples, "analytics_platform_dead_letters_total", **ours()) == len(dead)
    checks = Counter(check for letter in dead for check in letter["failed_checks"])
    for check, count in checks.items():
        assert value(samples, "analytics_platform_dead_letter_checks_total", **ours(), check=check) == count
    assert sum(v for (name, _), v in samples.items() if name == "analytics_platform_dead_letter_checks_total") == sum(
        checks.values()
    )
    newest = max(row["event_at"] for row in rows)
    assert value(samples, "analytics_platform_raw_freshness_seconds", **ours()) == pytest.approx(
        NOW - newest.timestamp()
    )
    batches_per_day = Counter(day for day, _ in {(r["event_at"].date(), r["ingested_at"]) for r in rows})
    table = open_table(load_catalog(settings), settings, EVENT_TYPE)
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert value(samples, "analytics_platform_raw_data_files", **ours()) == int(snapshot.summary["total-data-files"])
    assert value(samples, "analytics_platform_raw_partitions", **ours()) == len(batches_per_day)
    assert value(samples, "analytics_platform_raw_partition_data_files_max", **ours()) == max(batches_per_day.values())
    name = "analytics_platform_processing_latency_seconds"
    assert value(samples, f"{name}_count", **ours()) == len(latencies)
    assert value(samples, f"{name}_sum", **ours()) == pytest.approx(sum(latencies))
    for bound in LATENCY_BUCKETS:
        expected = sum(latency <= bound for latency in latencies)
        assert value(samples, f"{name}_bucket", **ours(), le=str(bound)) == expected


def test_collector_reports_what_kafka_iceberg_and_dagster_hold(broker: Settings) -> None:
    produce(broker)
    registry, collector = platform_registry(broker, cache_s=0, clock=lambda: NOW, data_files_every_s=0)
    first = land_batch(broker, BatchPlan(TOPIC, {0: (0, 20), 1: (0, 20)}))
    latencies = [(commit_ms(broker, first) - FIRST_MS[0]) / 1_000]  # each batch's oldest message

    samples = scrape(registry)
    ingress, egress, lag = {0: 30, 1: 20, 2: 4}, {0: 20, 1: 20, 2: 0}, {0: 10, 1: 0, 2: 4}
    for partition in (0, 1, 2):
        labels = ours(partition)
        assert value(samples, "analytics_platform_kafka_messages_total", **labels) == ingress[partition]
        assert value(samples, "analytics_platform_ingested_messages_total", **labels) == egress[partition]
        assert value(samples, "analytics_platform_lag_messages", **labels) == lag[partition]
    # The oldest message not landed: partition 0's offset 20, partition 2's offset 0 (never landed).
    assert value(samples, "analytics_platform_lag_seconds", **ours(0)) == pytest.approx(NOW - FIRST_MS[0] / 1e3 - 20)
    assert value(samples, "analytics_platform_lag_seconds", **ours(1)) == 0
    assert value(samples, "analytics_platform_lag_seconds", **ours(2)) == pytest.approx(NOW - FIRST_MS[2] / 1e3)
    for event_type in event_types().values():  # every topic has the series, zero included
        labels = {"topic": event_type.topic, "event_type": event_type.name}
        if event_type.name != EVENT_TYPE:
            assert value(samples, "analytics_platform_dead_letters_total", **labels) == 0
        assert (
            value(samples, "analytics_platform_failed_runs_total", dagster_job=f"ingest_{event_type.name}", **labels)
            == 0
        )
    check_lake_figures(samples, broker, latencies)
    assert not [key for key in samples if key[0].startswith("analytics_platform_mart_")]  # nothing built yet
    for source in ("kafka", "iceberg", "marts", "dbt", "dagster"):
        assert value(samples, "analytics_platform_source_up", source=source) == 1

    # A second batch advances the counters from its snapshot (and the dead letters from its files).
    second = land_batch(broker, BatchPlan(TOPIC, {0: (20, 25)}))
    latencies.append((commit_ms(broker, second) - (FIRST_MS[0] + 20_000)) / 1_000)
    samples = scrape(registry)
    assert value(samples, "analytics_platform_lag_messages", **ours(0)) == 5
    assert value(samples, "analytics_platform_lag_seconds", **ours(0)) == pytest.approx(NOW - FIRST_MS[0] / 1e3 - 25)
    check_lake_figures(samples, broker, latencies)

    # A failed Dagster run with an ingest topic's tag, then the rest landed by the real ingest job.
    @dg.asset
    def always_fails() -> None:
        raise RuntimeError("a run that fails, for the failed-runs counter")

    instance = get_instance(broker)
    failed = dg.materialize([always_fails], instance=instance, tags={TOPIC_TAG: TOPIC}, raise_on_error=False)
    assert not failed.success
    assert list(ingest_through_dagster(broker, TOPIC)) == [(9, 0)]  # partition 0's 25..29, partition 2's 0..3
    samples = scrape(registry)
    assert (
        value(samples, "analytics_platform_failed_runs_total", dagster_job=failed.dagster_run.job_name, **ours()) == 1
    )
    assert value(samples, "analytics_platform_failed_runs_total", dagster_job=f"ingest_{EVENT_TYPE}", **ours()) == 0
    for partition in (0, 1, 2):
        assert value(samples, "analytics_platform_lag_messages", **ours(partition)) == 0
        assert value(samples, "analytics_platform_lag_seconds", **ours(partition)) == 0
    (record,) = instance.fetch_materializations(dg.AssetKey(["raw", EVENT_TYPE]), limit=10).records
    assert record.asset_materialization is not None
    metadata = record.asset_materialization.metadata
    commits = metadata["commit_seconds_batches"].value
    assert isinstance(commits, list) and len(commits) == 1
    assert value(samples, "analytics_platform_commit_duration_seconds_count", **ours()) == 1
    assert value(samples, "analytics_platform_commit_duration_seconds_sum", **ours()) == pytest.approx(commits[0])
    # The raw asset's own figures: nothing left in Kafka, the table's data files after the run.
    table = open_table(load_catalog(broker), broker, EVENT_TYPE)
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert metadata["lag_messages"].value == 0
    assert metadata["data_files"].value == int(snapshot.summary["total-data-files"])
    batch_ms = {FIRST_MS[0] + 25_000, FIRST_MS[2]}
    expected_max = (snapshot.timestamp_ms - min(batch_ms)) / 1_000
    assert metadata["processing_latency_max_s"].value == pytest.approx(expected_max)
    latencies.append(expected_max)
    check_lake_figures(samples, broker, latencies)

    # A following run shows each micro-batch as it commits (not when the run ends, minutes later in
    # production), with its figures; the collector counts each batch's commit once (not again from the run's
    # final materialization).
    produce_more(broker, partition=1, count=3)
    following = run_ingest_job(broker, follow_s=FOLLOW_S)
    materializations = following.asset_materializations_for_node(f"raw__{EVENT_TYPE}")
    (batch,) = [m for m in materializations if "micro_batches" not in m.metadata]
    (stored,) = [
        r
        for r in instance.fetch_materializations(dg.AssetKey(["raw", EVENT_TYPE]), limit=5).records
        if r.run_id == following.run_id and "micro_batches" not in r.asset_materialization.metadata  # type: ignore[union-attr]
    ]
    run = instance.get_run_record_by_id(following.run_id)
    assert run is not None and run.end_time is not None
    assert run.end_time - stored.timestamp >= FOLLOW_S / 2  # it landed first, then the run followed FOLLOW_S
    table = open_table(load_catalog(broker), broker, EVENT_TYPE)
    snapshot = table.current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    oldest_ms = FIRST_MS[1] + 20_000  # partition 1's offset 20
    figures = {name: value.value for name, value in batch.metadata.items()}
    assert figures["rows_landed"] == 3 and figures["lag_messages"] == 0
    assert figures["data_files"] == int(snapshot.summary["total-data-files"])
    assert figures["processing_latency_max_s"] == pytest.approx((snapshot.timestamp_ms - oldest_ms) / 1_000)
    assert figures["processing_latency_p95_s"] == pytest.approx((snapshot.timestamp_ms - oldest_ms) / 1_000)
    latencies.append((snapshot.timestamp_ms - oldest_ms) / 1_000)
    samples = scrape(registry)
    assert value(samples, "analytics_platform_commit_duration_seconds_count", **ours()) == 2
    assert value(samples, "analytics_platform_commit_duration_seconds_sum", **ours()) == pytest.approx(
        commits[0] + figures["commit_seconds"]
    )
    check_lake_figures(samples, broker, latencies)
    collector.close()

    # The API serves the same figures on /metrics, without a key.
    with TestClient(create_app(broker)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    served = parse(response.text)
    for name in ("analytics_platform_landed_rows_total", "analytics_platform_dead_letters_total"):
        assert value(served, name, **ours()) == value(samples, name, **ours())
    assert value(served, "analytics_platform_lag_messages", **ours(0)) == 0


def test_marts_freshness_and_dbt_build_durations_from_the_published_build(landed_marts: LandedMarts) -> None:
    settings = landed_marts.settings
    registry, collector = platform_registry(settings, cache_s=0, clock=lambda: NOW)
    samples = scrape(registry)
    collector.close()
    catalog = load_catalog(settings)
    for name, event_type in event_types().items():
        event_at = open_table(catalog, settings, name).scan(selected_fields=("event_at",)).to_arrow()["event_at"]
        newest: datetime = pc.max(event_at).as_py()
        labels = {"topic": event_type.topic, "event_type": name}
        # Nothing landed after the build, so both the marts and the live facts reflect every raw row.
        for metric in ("analytics_platform_mart_freshness_seconds", "analytics_platform_live_mart_freshness_seconds"):
            assert value(samples, metric, **labels) == pytest.approx(NOW - newest.timestamp())
    targets = sorted((settings.duckdb_path / "dbt" / "targets").glob("*/run_results.json"))
    durations = {path.parent.name: json.loads(path.read_text())["elapsed_time"] for path in targets}
    assert "models" in durations
    for target, seconds in durations.items():
        assert value(samples, "analytics_platform_dbt_build_duration_seconds", dbt_target=target) == seconds


def test_a_source_that_fails_drops_its_figures_and_says_so() -> None:
    settings = get_settings()  # nothing listens on its broker port
    registry, collector = platform_registry(settings, cache_s=0)
    started = time.monotonic()
    samples = scrape(registry)
    collector.close()
    assert time.monotonic() - started < 10  # within Prometheus's default scrape timeout
    assert value(samples, "analytics_platform_source_up", source="kafka") == 0
    assert value(samples, "analytics_platform_source_errors_total", source="kafka") == 1
    for source in ("iceberg", "marts", "dbt", "dagster"):
        assert value(samples, "analytics_platform_source_up", source=source) == 1
    assert not [key for key in samples if key[0].startswith("analytics_platform_lag_")]
    assert value(samples, "analytics_platform_dead_letters_total", **ours()) == 0  # the other sources still report
