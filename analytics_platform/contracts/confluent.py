"""Registering the in-repo schemas with a Confluent-compatible Schema Registry (docker-compose runs one).

The in-repo registry stays the source of truth and its `schemas check` runs first; Confluent's
registry then enforces the same mode for every other client of the cluster. Subjects follow the
TopicNameStrategy (``<topic>-value``); each produced message carries its schema id in the
``schema.id`` header, so consumers and tools can fetch the exact schema a message was written with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError as ConfluentError

from analytics_platform.contracts.envelope import TOPIC_PREFIX
from analytics_platform.contracts.registry import Contract, SchemaVersion
from analytics_platform.exceptions import SchemaRegistryError, TransientError
from analytics_platform.security.redaction import redact

T = TypeVar("T")


def subject(event_type: str) -> str:
    """The TopicNameStrategy subject of an event type's values."""
    return f"{TOPIC_PREFIX}{event_type}-value"


class ConfluentRegistry:
    """Registers each schema version once per process and returns its id."""

    def __init__(self, url: str) -> None:
        # new_client also accepts mock:// URLs: confluent-kafka's own in-memory registry.
        self._client = SchemaRegistryClient.new_client({"url": url})
        self._where = redact(url)  # for messages: the URL may carry basic-auth credentials
        self._ids: dict[tuple[str, int], int] = {}

    def schema_id(self, version: SchemaVersion) -> int:
        key = (version.event_type, version.version)
        if key not in self._ids:
            self._ids[key] = self._register(version)
        return self._ids[key]

    def set_compatibility(self, contract: Contract) -> None:
        """Make the registry enforce the contract's mode on its subject (``schemas register`` does this)."""
        self._call(lambda: self._client.set_compatibility(subject(contract.event_type), contract.compatibility.value))

    def _register(self, version: SchemaVersion) -> int:
        schema = Schema(json.dumps(version.schema), "AVRO")
        try:
            return self._call(lambda: self._client.register_schema(subject(version.event_type), schema))
        except ConfluentError as error:
            if error.http_status_code == 409:
                raise SchemaRegistryError(
                    f"the Schema Registry at {self._where} refuses {version.path.name} of {version.event_type} "
                    f"as incompatible: {redact(str(error))}; run `analytics-platform schemas check`"
                ) from error
            raise

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except ConfluentError as error:
            if error.http_status_code == 409:
                raise
            raise TransientError(f"Schema Registry at {self._where} failed: {redact(str(error))}") from error
        except Exception as error:  # the HTTP client's connection errors have no common public base class
            raise TransientError(
                f"cannot reach the Schema Registry at {self._where} ({redact(str(error))}); check "
                "PLATFORM_SCHEMA_REGISTRY_URL"
            ) from error
