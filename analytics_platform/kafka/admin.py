"""Kafka topic administration: one topic per event type (and the dead-letter and metrics topics), created
idempotently with the replication the settings ask for."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.exceptions import BrokerError, ConfigError
from analytics_platform.kafka.client_config import client_config
from analytics_platform.settings import Settings

ADMIN_TIMEOUT_S = 15.0


def topic_config(settings: Settings, config: dict[str, str] | None = None) -> dict[str, str]:
    """The configs every topic the platform creates gets (``min.insync.replicas`` when set), then ``config``.

    Raises:
        ConfigError: more in-sync replicas required than the topic has, which would refuse every write.
    """
    wanted = settings.topic_min_insync_replicas
    factor = settings.topic_replication_factor
    if wanted is not None and wanted > factor:
        raise ConfigError(
            f"PLATFORM_TOPIC_MIN_INSYNC_REPLICAS={wanted} exceeds PLATFORM_TOPIC_REPLICATION_FACTOR={factor}: "
            "no write with acks=all could ever succeed. Lower it, or raise the replication factor."
        )
    base = {} if wanted is None else {"min.insync.replicas": str(wanted)}
    return base | (config or {})


def create_topics(
    settings: Settings, partitions: int, topics: list[str] | None = None, config: dict[str, str] | None = None
) -> list[str]:
    """Create the event topics (or ``topics``, with topic ``config``) that do not exist yet, each with
    PLATFORM_TOPIC_REPLICATION_FACTOR replicas; returns the ones created. Existing topics are left as they are."""
    configs = topic_config(settings, config)
    factor = settings.topic_replication_factor
    admin = AdminClient(client_config(settings))
    wanted = topics or event_topics()
    try:
        existing = set(admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics)
    except KafkaException as error:
        raise BrokerError(
            f"cannot reach Kafka at {settings.bootstrap_servers} ({error}); is the broker running? "
            "`analytics-platform broker start` starts the embedded one."
        ) from error
    missing = [topic for topic in wanted if topic not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=factor, config=configs) for topic in missing],
        operation_timeout=ADMIN_TIMEOUT_S,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as error:
            code = error.args[0].code()
            if code == KafkaError.INVALID_REPLICATION_FACTOR:
                raise BrokerError(
                    f"creating topic {topic} failed: {error}. PLATFORM_TOPIC_REPLICATION_FACTOR={factor} needs at "
                    "least that many brokers up: start them, or lower the setting."
                ) from error
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"creating topic {topic} failed: {error}") from error
    return created
