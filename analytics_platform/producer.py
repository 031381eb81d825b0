"""Publishing events to Kafka without silent loss.

The producer is idempotent with ``acks=all`` so librdkafka's retries never duplicate or reorder a
message, and every delivery report is checked: :meth:`EventProducer.flush` raises if any message
was not acknowledged, naming how many and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from analytics_platform.events import EVENT_TYPES, encode_event
from analytics_platform.exceptions import TransientError

FLUSH_TIMEOUT_S = 60.0


class DeliveryError(TransientError):
    """Some messages were not acknowledged by the broker."""


class EventProducer:
    """Routes envelopes to ``events.<event_type>``, keyed by ``user_id`` to keep a user's events ordered."""

    def __init__(self, bootstrap_servers: str, **overrides: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "retries": 2_147_483_647,
            "delivery.timeout.ms": 120_000,
            "compression.type": "zstd",
            "linger.ms": 20,
            "batch.size": 1_000_000,
        }
        config.update(overrides)
        self._producer = Producer(config)
        self._failures: list[KafkaError] = []
        self.delivered = 0

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)
        else:
            self.delivered += 1

    def send(self, event: dict[str, Any]) -> None:
        """Queue one envelope; raises KeyError for an unknown event_type before anything is sent."""
        topic = EVENT_TYPES[event["event_type"]].topic
        value = encode_event(event)
        while True:
            try:
                self._producer.produce(topic, value=value, key=event["user_id"].encode(), on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka drain it, then retry
                self._producer.poll(0.1)
        self._producer.poll(0)

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


def publish(
    events: Iterable[dict[str, Any]],
    bootstrap_servers: str,
    *,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send events (optionally paced at ``rate`` events/s) and wait for all acknowledgements."""
    started = time.monotonic()
    with EventProducer(bootstrap_servers) as producer:
        for index, event in enumerate(events, start=1):
            producer.send(event)
            if rate:
                ahead_s = index / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    time.sleep(ahead_s)
            if progress and index % 10_000 == 0:
                progress(index)
    return producer.delivered
