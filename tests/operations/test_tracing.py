"""One event's trace, from the producer to the raw table to the marts to the API, in an in-memory exporter.

The event goes through the platform's own producer to the embedded broker, is landed by the ingest path
the runs use, brought into the live facts by a live refresh (a full build is a minute of dbt here; the
refresh is the same build-and-publish with the live models, over a copy of the session's published
marts) and looked up with ``/v1/events?correlation_id=...``. Each hop's span must point to the previous
one: the message's ``traceparent`` header names the producer span, the batch span links to it, the
build span links to the batch span (through the context the batch stored in its snapshot).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, TopicPartition
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind

from analytics_platform.defs.transform.project import dbt_resource
from analytics_platform.exceptions import ConfigError
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka.producer import Rejection, producer_options, publish
from analytics_platform.kafka.reader import log_bounds, make_consumer
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.snapshots import TRACEPARENT_KEY, properties
from analytics_platform.lakehouse.tables import ensure_tables, open_table
from analytics_platform.operations import tracing
from analytics_platform.operations.smoke import sample_event
from analytics_platform.serving.access import KeyStore, Role
from analytics_platform.serving.api.app import create_app
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.live import refresh_live_facts
from tests.helpers import landed
from tests.landed import LandedMarts

TOPIC = "events.user_visit"
DEAD_LETTER_TOPIC = "dead-letter.events"
READ_DEADLINE_S = 30.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The platform's spans of this test, kept in memory (exported as each ends)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tracing.use_provider(provider):
        yield exporter
    provider.shutdown()


@pytest.fixture
def platform(broker: Settings, landed_marts: LandedMarts) -> Settings:
    """This test's broker and raw tables, with the session's published marts copied in (a live refresh copies
    the published build)."""
    shutil.copytree(landed_marts.settings.duckdb_path, broker.duckdb_path, symlinks=True)
    ensure_tables(load_catalog(broker), broker)
    return broker


def read_message(settings: Settings, topic: str, partition: int, offset: int) -> Message:
    """The message at ``offset``, read with assign() (no consumer group)."""
    consumer = make_consumer(settings)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + READ_DEADLINE_S
        while time.monotonic() < deadline:
            for message in consumer.consume(10, timeout=0.2):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"reading {topic}[{partition}] failed: {error}")
                if error is None and message.offset() == offset:
                    return message
    finally:
        consumer.close()
    raise AssertionError(f"no message at {topic}[{partition}] offset {offset} within {READ_DEADLINE_S:.0f}s")


def w3c(context: SpanContext) -> str:
    """The ``traceparent`` naming ``context``, formatted by hand (W3C trace context, version 00)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def the_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, f"{len(named)} spans named {name!r} among {[span.name for span in spans]}"
    return named[0]


def linked(span: ReadableSpan) -> dict[tuple[int, int], dict[str, Any]]:
    """(trace id, span id) of each link of ``span``, with the link's attributes."""
    return {(link.context.trace_id, link.context.span_id): dict(link.attributes or {}) for link in span.links}


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


@pytest.mark.integration
def test_one_event_is_followed_from_the_producer_to_the_batch_to_the_build_to_the_api(
    platform: Settings, spans: InMemorySpanExporter
) -> None:
    event = sample_event(datetime.now(UTC))
    correlation_id = str(event["correlation_id"])
    invalid = dict(event, event_id=str(uuid.uuid4()), schema_version=99)
    rejected: list[Rejection] = []
    options = producer_options(platform)
    assert publish([event, invalid], platform, on_reject=rejected.append, **options) == 1
    assert [rejection.event for rejection in rejected] == [invalid]

    results = ingest_until_caught_up(platform, TOPIC)
    assert [(result.rows_landed, result.dead_lettered) for result in results] == [(1, 0)]
    [row] = landed(platform, "user_visit").to_pylist()
    assert row["event_id"] == event["event_id"]
    partition, offset = int(row["kafka_partition"]), int(row["kafka_offset"])

    # Produced: one span per message, ended at the broker's acknowledgement with where the message went ...
    send = the_span(list(spans.get_finished_spans()), f"send {TOPIC}")
    assert send.kind is SpanKind.PRODUCER and send.context is not None
    assert dict(send.attributes or {}) == {
        "messaging.system": "kafka",
        "messaging.destination.name": TOPIC,
        "messaging.operation.type": "send",
        "analytics_platform.correlation_id": correlation_id,
        "analytics_platform.event_id": event["event_id"],
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
    }
    # ... whose context the message carries in its headers, as Kafka holds it.
    assert read_message(platform, TOPIC, partition, offset).headers() == [("traceparent", w3c(send.context).encode())]
    # The invalid event went to the dead-letter topic, its record unchanged, with a span of its own.
    dead_letter = the_span(list(spans.get_finished_spans()), f"send {DEAD_LETTER_TOPIC}")
    assert dead_letter.context is not None
    attributes = dict(dead_letter.attributes or {})
    assert attributes["analytics_platform.correlation_id"] == correlation_id
    assert attributes["analytics_platform.rejected"] == rejected[0].error
    record = read_message(platform, DEAD_LETTER_TOPIC, 0, 0)
    assert record.headers() == [("traceparent", w3c(dead_letter.context).encode())]
    assert b'"kind":"schema_mismatch"' in (record.value() or b"").replace(b" ", b"")

    # Landed: the micro-batch's span links to the producer span, with the message's offset and correlation id.
    land = the_span(list(spans.get_finished_spans()), f"land {TOPIC}")
    assert land.kind is SpanKind.CONSUMER and land.context is not None
    assert linked(land) == {
        ids(send): {
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "analytics_platform.correlation_id": correlation_id,
        }
    }
    table = open_table(load_catalog(platform), platform, "user_visit")
    snapshot = table.current_snapshot()
    assert snapshot is not None
    summary = properties(snapshot)
    attributes = dict(land.attributes or {})
    assert attributes["analytics_platform.correlation_id"] == (correlation_id,)
    assert attributes["analytics_platform.batch_id"] == results[0].plan.run_key  # as its dead letters would say
    assert f"{TOPIC}|" in results[0].plan.run_key and f"{partition}:{offset}-{offset + 1}" in results[0].plan.run_key
    assert attributes["messaging.system"] == "kafka" and attributes["messaging.destination.name"] == TOPIC
    assert attributes["messaging.batch.message_count"] == 1
    assert attributes["analytics_platform.kafka.partitions"] == tuple(sorted(results[0].plan.ranges))
    assert (attributes["analytics_platform.rows_landed"], attributes["analytics_platform.dead_letters"]) == (1, 0)
    assert attributes["analytics_platform.snapshot_id"] == str(snapshot.snapshot_id)
    assert summary[TRACEPARENT_KEY] == w3c(land.context)  # what the builds link to

    # Built: the live refresh's span has the published build's id and links to the batch that landed the event.
    def run_dbt(args: list[str], target: Path) -> None:
        dbt_resource().cli(args, target_path=target).wait()

    assert refresh_live_facts(run_dbt, platform, logging.getLogger(__name__)) is not None
    published = current_build(platform)
    assert published is not None
    build = the_span(list(spans.get_finished_spans()), "refresh live facts")
    assert dict(build.attributes or {})["analytics_platform.build_id"] == published.parent.name
    assert dict(build.attributes or {})["analytics_platform.build_kind"] == "live"
    assert linked(build) == {
        ids(land): {
            "analytics_platform.table": "raw.user_visit",
            "analytics_platform.snapshot_id": str(snapshot.snapshot_id),
        }
    }

    # Served: the drill-down request's span carries the correlation id it asked for.
    key = KeyStore(platform.api_keys_path).create("analyst", Role.analyst, None)
    with TestClient(create_app(platform)) as client:
        answer = client.get(
            "/v1/events", params={"correlation_id": correlation_id}, headers={"Authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 200, answer.text
    assert [found["event_id"] for found in answer.json()["events"]] == [event["event_id"]]
    request = the_span(list(spans.get_finished_spans()), "GET /v1/events")
    assert request.kind is SpanKind.SERVER
    assert dict(request.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/v1/events",
        "analytics_platform.correlation_id": correlation_id,
        "http.route": "/v1/events",
        "http.response.status_code": 200,
    }


@pytest.mark.integration
def test_with_tracing_off_messages_carry_no_trace_headers(broker: Settings) -> None:
    assert tracing.tracer() is None  # PLATFORM_TRACES_EXPORTER defaults to none
    assert publish([sample_event(datetime.now(UTC))], broker, **producer_options(broker)) == 1
    [partition] = [p for p, bounds in log_bounds(broker, TOPIC).items() if bounds.end > 0]
    assert read_message(broker, TOPIC, partition, 0).headers() is None


@pytest.mark.fast
def test_the_otlp_exporter_needs_its_package_and_says_which() -> None:
    if find_spec("opentelemetry.exporter") is None:  # not a dependency: docs/operations.md#tracing
        with pytest.raises(ConfigError, match=r"pip install opentelemetry-exporter-otlp==1\.45\.1"):
            tracing.span_exporter("otlp")
    else:
        assert type(tracing.span_exporter("otlp")).__name__ == "OTLPSpanExporter"
    assert tracing.span_exporter("none") is None


@pytest.mark.fast
def test_the_console_exporter_prints_each_span(tmp_path: Path) -> None:
    """In a process of its own: setting up tracing installs OpenTelemetry's global provider, once."""
    script = (
        "from analytics_platform.operations import tracing\n"
        "from analytics_platform.settings import get_settings\n"
        "tracing.setup(get_settings())\n"
        "with tracing.span('checked', attributes={tracing.CORRELATION_ID: 'journey-1'}):\n"
        "    pass\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env |= {"PLATFORM_HOME": str(tmp_path), "PLATFORM_TRACES_EXPORTER": "console"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [printed] = [json.loads(done.stdout)]  # one span, as one JSON document
    assert printed["name"] == "checked"
    assert printed["attributes"] == {"analytics_platform.correlation_id": "journey-1"}
    assert printed["resource"]["attributes"]["service.name"] == "analytics-platform"
