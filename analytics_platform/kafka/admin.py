"""Kafka topic administration: one topic per event type (and the metrics topic), created idempotently."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.exceptions import BrokerError

ADMIN_TIMEOUT_S = 15.0


def create_topics(
    bootstrap_servers: str, partitions: int, topics: list[str] | None = None, config: dict[str, str] | None = None
) -> list[str]:
    """Create the event topics (or ``topics``, with topic ``config``) that do not exist yet; returns the ones
    created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    wanted = topics or event_topics()
    try:
        existing = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    except KafkaException as error:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap_servers} ({error}); is the broker running? "
            "`analytics-platform broker start` starts the embedded one."
        ) from error
    missing = [topic for topic in wanted if topic not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {}) for topic in missing],
        operation_timeout=ADMIN_TIMEOUT_S,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"creating topic {topic} failed: {error}") from error
    return created
