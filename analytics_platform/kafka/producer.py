"""Publishing events to Kafka without silent loss, validated at the edge.

The producer is idempotent with ``acks=all`` so librdkafka's retries never duplicate or reorder a
message, and every delivery report is checked: :meth:`EventProducer.flush` raises if any message
was not acknowledged, naming how many and why.

Every event is validated against its schema version before it is sent. An invalid one never
reaches its topic: it goes to the dead-letter topic as a schema-mismatch record (the original
event, the error and the schema expected), and :meth:`EventProducer.send` returns the rejection.

With tracing on (:mod:`analytics_platform.operations.tracing`), each message gets a producer span, from
``send`` to the broker's acknowledgement, whose W3C context travels in the message's ``traceparent``
header: ingestion links its micro-batch's span to it. With tracing off, messages carry no such header.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from opentelemetry.trace import Span, SpanKind

from analytics_platform.contracts.envelope import encode_event
from analytics_platform.contracts.registry import SchemaRegistry, SchemaVersion, load_registry
from analytics_platform.contracts.validation import validate_message
from analytics_platform.exceptions import DeliveryError, UnknownSchemaVersion
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.client_config import client_config
from analytics_platform.operations import tracing
from analytics_platform.settings import Settings

FLUSH_TIMEOUT_S = 60.0
DEFAULT_DEAD_LETTER_TOPIC = "dead-letter.events"
SCHEMA_ID_HEADER = "schema.id"


@dataclass(frozen=True)
class Rejection:
    """An event that failed edge validation and went to the dead-letter topic instead of its own."""

    event: Any
    error: str
    expected: SchemaVersion | None

    def record(self) -> bytes:
        """The schema-mismatch record published to the dead-letter topic."""
        try:
            original: Any = json.loads(encode_event(self.event))
        except (TypeError, ValueError):
            original = repr(self.event)
        expected = self.expected
        return json.dumps(
            {
                "kind": "schema_mismatch",
                "rejected_at": datetime.now(UTC).isoformat(),
                "error": self.error,
                "event": original,
                "expected_schema": None
                if expected is None
                else {"subject": expected.event_type, "version": expected.version, "schema": expected.schema},
            }
        ).encode()


class EventProducer:
    """Routes envelopes to ``events.<event_type>``, keyed by ``user_id`` to keep a user's events ordered."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: SchemaRegistry | None = None,
        dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC,
        schema_ids: Callable[[SchemaVersion], int] | None = None,
        **overrides: Any,
    ) -> None:
        """Connects as the settings say (:func:`client_config`); ``schema_ids`` (a Confluent Schema Registry
        lookup) tags each message with its schema's id."""
        config: dict[str, Any] = {
            **client_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "retries": 2_147_483_647,
            "delivery.timeout.ms": 120_000,
            "compression.type": "zstd",
            "linger.ms": settings.producer_linger_ms,  # fewer, larger record batches: see the setting
            "batch.size": 1_000_000,
        }
        config.update(overrides)
        self._producer = Producer(config)
        self._settings = settings
        self._registry = registry or load_registry()
        self._dead_letter_topic = dead_letter_topic
        self._dead_letter_topic_ready = False
        self._schema_ids = schema_ids
        self._tracer = tracing.tracer()  # None: tracing is off, messages go out as before
        self._failures: list[KafkaError] = []
        self.delivered = 0
        self.rejected: list[Rejection] = []

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)
        else:
            self.delivered += 1

    def _on_dead_letter_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)

    def _traced(
        self, topic: str, event: Any, on_delivery: Any, headers: list[Any] | None, rejected: str | None = None
    ) -> tuple[Any, list[Any]]:
        """A producer span for one message: (the delivery callback that ends it, the headers carrying it).
        ``rejected``: why the event goes to the dead-letter topic instead of its own."""
        assert self._tracer is not None
        # Few attributes: the SDK validates each one, and this runs per message.
        attributes: dict[str, Any] = {
            tracing.MESSAGING_SYSTEM: "kafka",
            tracing.MESSAGING_DESTINATION: topic,
            tracing.MESSAGING_OPERATION_TYPE: "send",
        }
        if isinstance(event, dict):
            for attribute, field in ((tracing.CORRELATION_ID, "correlation_id"), (tracing.EVENT_ID, "event_id")):
                if isinstance(value := event.get(field), str):
                    attributes[attribute] = value
        if rejected is not None:
            attributes[tracing.REJECTED] = rejected
        span = self._tracer.start_span(f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes)

        def delivered(error: KafkaError | None, message: Message) -> None:
            _end_send_span(span, error, message)
            on_delivery(error, message)

        return delivered, tracing.inject_headers(span, headers or [])

    def _produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any, headers: Any = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery, headers=headers)
                break
            except BufferError:  # local queue full: let librdkafka drain it, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _validate(self, event: Any) -> tuple[bytes | None, str | None, SchemaVersion | None]:
        """(wire bytes, error, schema expected): the bytes are exactly what ingestion will read."""
        if not isinstance(event, dict):
            return None, f"an event is a JSON object, not {type(event).__name__}", None
        try:
            contract = self._registry.contract(str(event.get("event_type")))
        except KeyError as error:
            return None, str(error.args[0]), None
        try:
            expected = contract.version(int(event.get("schema_version", 0)))
        except (UnknownSchemaVersion, TypeError, ValueError) as error:
            return None, f"schema_version {event.get('schema_version')!r}: {error}", contract.latest
        try:
            value = encode_event(event)
        except TypeError as error:
            return None, f"not serialisable as JSON: {error}", expected
        return value, validate_message(contract, value), expected

    def send(self, event: Any) -> Rejection | None:
        """Validate and queue one envelope; an invalid one goes to the dead-letter topic and is returned."""
        value, error, expected = self._validate(event)
        if error is not None or value is None:
            rejection = Rejection(event, error or "invalid", expected)
            if not self._dead_letter_topic_ready:
                create_topics(self._settings, 1, [self._dead_letter_topic])
                self._dead_letter_topic_ready = True
            on_delivery, dead_letter_headers = self._on_dead_letter_delivery, None
            if self._tracer is not None:
                on_delivery, dead_letter_headers = self._traced(
                    self._dead_letter_topic, event, on_delivery, None, rejection.error
                )
            self._produce(self._dead_letter_topic, rejection.record(), None, on_delivery, dead_letter_headers)
            self.rejected.append(rejection)
            return rejection
        assert expected is not None
        headers = None
        if self._schema_ids is not None:
            headers = [(SCHEMA_ID_HEADER, str(self._schema_ids(expected)).encode())]
        topic, on_delivery = f"events.{expected.event_type}", self._on_delivery
        if self._tracer is not None:
            on_delivery, headers = self._traced(topic, event, on_delivery, headers)
        self._produce(topic, value, event["user_id"].encode(), on_delivery, headers)
        return None

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Wait for every delivery report; returns delivered count or raises DeliveryError."""
        remaining = self._producer.flush(timeout_s)
        if remaining or self._failures:
            reasons = sorted({str(error) for error in self._failures[:20]})
            raise DeliveryError(
                f"{len(self._failures)} message(s) failed and {remaining} are still undelivered after "
                f"{timeout_s:.0f}s: {'; '.join(reasons) or 'broker did not acknowledge in time'}"
            )
        return self.delivered

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.flush()


def _end_send_span(span: Span, error: KafkaError | None, message: Message) -> None:
    """End a message's producer span at its delivery report, with where it landed or why it did not."""
    if error is not None:
        tracing.failed(span, error.name(), str(error))
    elif (offset := message.offset()) is not None:  # a delivered message has one
        span.set_attributes({tracing.MESSAGING_PARTITION: str(message.partition()), tracing.MESSAGING_OFFSET: offset})
    span.end()


def producer_options(settings: Settings) -> dict[str, Any]:
    """The EventProducer arguments the settings imply (schema directory, dead-letter topic, Confluent registry);
    also sets up the process's tracing from them."""
    tracing.setup(settings)
    options: dict[str, Any] = {
        "registry": load_registry(settings.schema_path),
        "dead_letter_topic": settings.dead_letter_topic,
    }
    if settings.schema_registry_url:
        from analytics_platform.contracts.confluent import ConfluentRegistry

        options["schema_ids"] = ConfluentRegistry(settings.schema_registry_url).schema_id
    return options


def publish(
    events: Iterable[dict[str, Any]],
    settings: Settings,
    *,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    **producer_options: Any,
) -> int:
    """Send events (optionally paced at ``rate`` events/s) and wait for all acknowledgements.

    Returns how many were delivered to their topics; each rejected one is passed to ``on_reject``.
    """
    started = time.monotonic()
    with EventProducer(settings, **producer_options) as producer:
        for index, event in enumerate(events, start=1):
            rejection = producer.send(event)
            if rejection is not None and on_reject is not None:
                on_reject(rejection)
            if rate:
                ahead_s = index / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    time.sleep(ahead_s)
            if progress and index % 10_000 == 0:
                progress(index)
    return producer.delivered
