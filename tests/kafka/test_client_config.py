"""The settings map to librdkafka's security options exactly, librdkafka accepts them, the SASL password stays
out of the settings' repr and errors, and topics get the replication the settings ask for."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest
from confluent_kafka.admin import AdminClient

from analytics_platform.exceptions import ConfigError
from analytics_platform.kafka.admin import topic_config
from analytics_platform.kafka.client_config import client_config
from analytics_platform.settings import get_settings
from tests.conftest import set_environment

pytestmark = pytest.mark.fast

PASSWORD = "s3cret-Pa55word"


def test_the_default_is_the_embedded_broker_in_plaintext() -> None:
    settings = get_settings()
    assert client_config(settings) == {
        "bootstrap.servers": f"127.0.0.1:{settings.broker_port}",
        "security.protocol": "PLAINTEXT",
    }


def test_sasl_ssl_maps_to_librdkafka_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_environment(
        monkeypatch,
        PLATFORM_KAFKA_BOOTSTRAP_SERVERS="kafka-1:9092,kafka-2:9092",
        PLATFORM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        PLATFORM_KAFKA_SSL_CA_LOCATION=str(tmp_path / "ca.crt"),
        PLATFORM_KAFKA_SSL_CERTIFICATE_LOCATION=str(tmp_path / "client.crt"),
        PLATFORM_KAFKA_SSL_KEY_LOCATION=str(tmp_path / "client.key"),
        PLATFORM_KAFKA_SSL_KEY_PASSWORD="key-pass",
        PLATFORM_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        PLATFORM_KAFKA_SASL_USERNAME="platform",
        PLATFORM_KAFKA_SASL_PASSWORD=PASSWORD,
    )
    assert client_config(get_settings()) == {
        "bootstrap.servers": "kafka-1:9092,kafka-2:9092",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(tmp_path / "ca.crt"),
        "ssl.certificate.location": str(tmp_path / "client.crt"),
        "ssl.key.location": str(tmp_path / "client.key"),
        "ssl.key.password": "key-pass",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "platform",
        "sasl.password": PASSWORD,
    }


def test_ssl_without_sasl_and_the_default_mechanism(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(monkeypatch, PLATFORM_KAFKA_SECURITY_PROTOCOL="SSL", PLATFORM_KAFKA_SSL_CA_LOCATION="/ca.crt")
    assert client_config(get_settings())["security.protocol"] == "SSL"
    assert "sasl.mechanism" not in client_config(get_settings())
    set_environment(
        monkeypatch,
        PLATFORM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        PLATFORM_KAFKA_SASL_USERNAME="platform",
        PLATFORM_KAFKA_SASL_PASSWORD=PASSWORD,
    )
    assert client_config(get_settings())["sasl.mechanism"] == "SCRAM-SHA-512"


def test_librdkafka_accepts_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key and value is one librdkafka knows: a wrong one fails the client's construction."""
    set_environment(
        monkeypatch,
        PLATFORM_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",  # never reached: the test only builds the client
        PLATFORM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        PLATFORM_KAFKA_SSL_CA_LOCATION=certifi.where(),
        PLATFORM_KAFKA_SASL_USERNAME="platform",
        PLATFORM_KAFKA_SASL_PASSWORD=PASSWORD,
    )
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
        monkeypatch.setenv("PLATFORM_KAFKA_SASL_MECHANISM", mechanism)
        AdminClient({**client_config(get_settings()), "log_level": 0})


def test_the_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    set_environment(
        monkeypatch,
        PLATFORM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        PLATFORM_KAFKA_SASL_USERNAME="platform",
        PLATFORM_KAFKA_SASL_PASSWORD=PASSWORD,
        PLATFORM_KAFKA_SSL_KEY_PASSWORD=PASSWORD,
    )
    settings = get_settings()
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD
    for shown in (repr(settings), str(settings), repr(settings.kafka_sasl_password), settings.model_dump_json()):
        assert PASSWORD not in shown
    monkeypatch.setenv("PLATFORM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")  # an error names the settings, not values
    with pytest.raises(ConfigError) as raised:
        client_config(get_settings())
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"PLATFORM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PLATFORM_KAFKA_SASL_USERNAME": "platform"},
            "PLATFORM_KAFKA_SECURITY_PROTOCOL=SASL_SSL logs in with SASL: set PLATFORM_KAFKA_SASL_USERNAME and "
            "PLATFORM_KAFKA_SASL_PASSWORD.",
        ),
        (
            {"PLATFORM_KAFKA_SSL_CA_LOCATION": "/ca.crt", "PLATFORM_KAFKA_SSL_KEY_LOCATION": "/client.key"},
            "PLATFORM_KAFKA_SSL_CA_LOCATION, PLATFORM_KAFKA_SSL_KEY_LOCATION set, but PLATFORM_KAFKA_SECURITY_PROTOCOL="
            "PLAINTEXT does not use TLS: set it to SSL or SASL_SSL, or unset them.",
        ),
        (
            {"PLATFORM_KAFKA_SECURITY_PROTOCOL": "SSL", "PLATFORM_KAFKA_SASL_USERNAME": "platform"},
            "PLATFORM_KAFKA_SASL_USERNAME or PLATFORM_KAFKA_SASL_PASSWORD set, but PLATFORM_KAFKA_SECURITY_PROTOCOL="
            "SSL does not log in: set it to SASL_SSL (or SASL_PLAINTEXT), or unset them.",
        ),
    ],
    ids=["sasl without password", "tls options in plaintext", "sasl options without sasl"],
)
def test_inconsistent_settings_fail_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    set_environment(monkeypatch, **variables)
    with pytest.raises(ConfigError) as raised:
        client_config(get_settings())
    assert str(raised.value) == message


def test_topics_get_the_configured_min_insync_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    compacted = {"cleanup.policy": "compact"}
    assert topic_config(get_settings()) == {}
    assert topic_config(get_settings(), compacted) == compacted
    set_environment(monkeypatch, PLATFORM_TOPIC_REPLICATION_FACTOR="3", PLATFORM_TOPIC_MIN_INSYNC_REPLICAS="2")
    assert get_settings().topic_replication_factor == 3
    assert topic_config(get_settings()) == {"min.insync.replicas": "2"}
    assert topic_config(get_settings(), compacted) == {"min.insync.replicas": "2", "cleanup.policy": "compact"}
    monkeypatch.setenv("PLATFORM_TOPIC_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(ConfigError) as raised:
        topic_config(get_settings())
    assert str(raised.value) == (
        "PLATFORM_TOPIC_MIN_INSYNC_REPLICAS=4 exceeds PLATFORM_TOPIC_REPLICATION_FACTOR=3: no write with acks=all "
        "could ever succeed. Lower it, or raise the replication factor."
    )
