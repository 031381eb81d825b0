"""The warehouse on object storage: raw events land in an ``s3://`` warehouse and every reader reads them back.

MinIO needs a container engine; moto's server mode is a real S3-compatible HTTP server in this process
(``ThreadedMotoServer``), so pyiceberg's S3 FileIO, DuckDB's httpfs and dbt talk S3 over HTTP to it exactly
as they would to MinIO, with path-style addressing and access keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pyarrow as pa
import pytest
import requests
from moto.server import ThreadedMotoServer

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.expiry import expire_and_clean
from analytics_platform.lakehouse.tables import ensure_raw_table
from analytics_platform.local.orchestration import build_marts
from analytics_platform.serving.events import lake_connection
from analytics_platform.settings import Settings, get_settings
from analytics_platform.warehouse.connections import configure_object_storage, connect_marts
from tests.conftest import set_environment
from tests.helpers import counts_by_type, free_port, produce

pytestmark = pytest.mark.integration

BUCKET = "warehouse"
PREFIX = "lake"
ACCESS_KEY, SECRET_KEY = "platform-test", "platform-test-secret"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A running S3-compatible server with the bucket created, and the platform pointed at it; yields a
    boto3 client of that server (to look at the objects the platform wrote)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        client.create_bucket(Bucket=BUCKET)
        set_environment(
            monkeypatch,
            PLATFORM_WAREHOUSE=f"s3://{BUCKET}/{PREFIX}",
            PLATFORM_S3_ENDPOINT=endpoint,
            PLATFORM_S3_ACCESS_KEY_ID=ACCESS_KEY,
            PLATFORM_S3_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_EC2_METADATA_DISABLED="true",  # never ask a cloud metadata service for credentials
        )
        yield client
    finally:
        requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10)  # moto's state is per process
        server.stop()


def objects(client: Any, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def duckdb_count(settings: Settings, metadata_location: str) -> int:
    with lake_connection(settings) as lake:
        row = lake.execute("select count(*) from iceberg_scan(?)", [metadata_location]).fetchone()
    assert row is not None
    return int(row[0])


def test_events_land_encrypted_in_s3_and_pyiceberg_duckdb_and_dbt_read_them(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environment(monkeypatch, PLATFORM_S3_SSE="AES256")
    settings = get_settings()
    embedded_broker.start(settings)
    try:
        create_topics(settings, settings.topic_partitions)
        events = produce(settings, 1_500, days=1)
        for event_type in event_types().values():
            ingest_until_caught_up(settings, event_type.topic)
        expected = counts_by_type(events)
        catalog = load_catalog(settings)

        for name, event_type in event_types().items():
            table = ensure_raw_table(catalog, settings, event_type)
            assert table.metadata_location.startswith(f"s3://{BUCKET}/{PREFIX}/")
            assert table.scan().to_arrow().num_rows == expected[name]  # pyiceberg, through its S3 FileIO
            if expected[name]:
                assert duckdb_count(settings, table.metadata_location) == expected[name]  # DuckDB, through httpfs

        keys = objects(s3, f"{PREFIX}/")
        assert any(key.endswith(".parquet") for key in keys) and any(key.endswith(".metadata.json") for key in keys)
        encryption = {key: s3.head_object(Bucket=BUCKET, Key=key).get("ServerSideEncryption") for key in keys}
        assert set(encryption.values()) == {"AES256"}, encryption  # every object asked for SSE-S3
        assert not (settings.home / "warehouse").exists()  # nothing went to the local default

        # dbt builds the marts from the raw views over S3 (its connections get the secret from the plugin);
        # the build also sends the headline metrics to the broker.
        build_marts(settings)
    finally:
        embedded_broker.stop(settings)
    with connect_marts(settings) as marts:
        marts.execute("load iceberg")
        configure_object_storage(marts, settings)
        raw_visits = marts.execute("select count(*) from raw.user_visit").fetchone()
        sessions = marts.execute("select count(*) from marts.fct_sessions").fetchone()
    assert raw_visits == (expected["user_visit"],)
    assert sessions is not None and sessions[0] > 0

    # Orphan-file deletion lists and deletes on S3 too (a PyArrowFileIO of the same properties lists).
    orphan = f"{PREFIX}/raw/user_visit/data/orphan-of-a-failed-write.parquet"
    s3.put_object(Bucket=BUCKET, Key=orphan, Body=b"not referenced by any snapshot")
    now = datetime.now(UTC)
    expire_and_clean(settings, now=now + timedelta(days=1), progress=lambda _: None)
    assert orphan in objects(s3, f"{PREFIX}/raw/user_visit/")  # seen, waiting for the grace period
    pending = f"{PREFIX}/raw/user_visit.pending-deletes.json"
    assert s3.head_object(Bucket=BUCKET, Key=pending).get("ServerSideEncryption") == "AES256"
    expire_and_clean(settings, now=now + timedelta(days=3), progress=lambda _: None)
    assert orphan not in objects(s3, f"{PREFIX}/raw/user_visit/")
    assert (
        ensure_raw_table(load_catalog(settings), settings, event_types()["user_visit"]).scan().to_arrow().num_rows
        == (expected["user_visit"])
    )


def test_without_sse_pyarrow_fileio_writes_plain_objects_duckdb_reads(s3: Any) -> None:
    """PLATFORM_S3_SSE=none keeps pyiceberg's default PyArrowFileIO (no SSE header: the bucket default decides)."""
    settings = get_settings()
    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists("plain")
    rows = pa.table({"n": pa.array(range(1_000), pa.int64())})
    table = catalog.create_table("plain.numbers", schema=rows.schema)
    table.append(rows)

    assert type(table.io).__name__ == "PyArrowFileIO"
    assert table.scan().to_arrow().num_rows == 1_000
    assert duckdb_count(settings, table.metadata_location) == 1_000
    keys = objects(s3, f"{PREFIX}/plain/")
    assert any(key.endswith(".parquet") for key in keys)
    assert all(s3.head_object(Bucket=BUCKET, Key=key).get("ServerSideEncryption") is None for key in keys)
