"""The doctor's topics line compares the replicas the broker reports with PLATFORM_TOPIC_REPLICATION_FACTOR, on
metadata shaped as a three-broker cluster answers it; and fails with the fix when the Kafka client settings
contradict each other."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ClusterMetadata, PartitionMetadata, TopicMetadata

from analytics_platform.contracts.envelope import event_topics
from analytics_platform.operations.doctor import Finding, _check_topics, check_kafka
from analytics_platform.settings import get_settings
from tests.conftest import set_environment

pytestmark = pytest.mark.fast


def cluster(replicas: int) -> ClusterMetadata:
    """Metadata of every event topic with 3 partitions (the default) of ``replicas`` replicas each, all in sync."""
    metadata = ClusterMetadata()
    for name in event_topics():
        topic = TopicMetadata()
        topic.topic = name
        for index in range(3):
            partition = PartitionMetadata()
            partition.id, partition.leader = index, 1
            partition.replicas = partition.isrs = list(range(1, replicas + 1))
            topic.partitions[index] = partition
        metadata.topics[name] = topic
    return metadata


def test_topics_with_the_configured_replicas_are_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, PLATFORM_TOPIC_REPLICATION_FACTOR="3")
    finding = _check_topics(get_settings(), cluster(replicas=3))
    assert finding == Finding(
        "topics", True, f"{len(event_topics())} event topics, 3 partitions each, replication factor 3, all in sync"
    )


def test_topics_with_fewer_replicas_than_configured_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, PLATFORM_TOPIC_REPLICATION_FACTOR="3")
    finding = _check_topics(get_settings(), cluster(replicas=1))
    short = ", ".join(f"{topic}[{partition}] has 1" for topic in event_topics() for partition in range(3))
    assert finding == Finding(
        "topics",
        False,
        f"fewer than 3 replicas (PLATFORM_TOPIC_REPLICATION_FACTOR): {short}",
        "the topics were created with fewer: add replicas with Kafka's `kafka-reassign-partitions.sh`, or set "
        "PLATFORM_TOPIC_REPLICATION_FACTOR to what they have",
    )
    # More replicas than asked for is no risk: the default factor 1 accepts a cluster's topics.
    monkeypatch.delenv("PLATFORM_TOPIC_REPLICATION_FACTOR")
    assert _check_topics(get_settings(), cluster(replicas=3)).ok


def test_inconsistent_client_settings_fail_the_kafka_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, PLATFORM_KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    broker, topics = check_kafka(get_settings())
    assert (broker.ok, topics.ok) == (False, False)
    assert broker.detail.startswith("not checked: PLATFORM_KAFKA_SECURITY_PROTOCOL=SASL_SSL logs in with SASL")
    assert broker.fix == "correct the PLATFORM_KAFKA_* settings (docs/security.md#kafka-tls-and-sasl)"
