"""The librdkafka options every Kafka client of the platform starts from: where the brokers are and how to
reach them securely (TLS, SASL).

Producers, consumers and admin clients all build their configuration on :func:`client_config`, so a cluster
that requires SASL_SSL is configured once, in the settings, and no client can connect in clear text by
being forgotten. The returned dict holds the SASL password in clear (librdkafka needs it): pass it to a
client, never to a log.
"""

from __future__ import annotations

from typing import Any

from analytics_platform.exceptions import ConfigError
from analytics_platform.settings import Settings

TLS_PROTOCOLS = {"SSL", "SASL_SSL"}
SASL_PROTOCOLS = {"SASL_PLAINTEXT", "SASL_SSL"}


def client_config(settings: Settings) -> dict[str, Any]:
    """``bootstrap.servers`` and the security options the settings imply, for any confluent-kafka client.

    Raises:
        ConfigError: a SASL protocol without user name or password, or TLS or SASL options that the chosen
            protocol would silently ignore (a connection believed encrypted that is not).
    """
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers, "security.protocol": protocol}
    key_password = settings.kafka_ssl_key_password
    tls = {
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
        "ssl.key.password": None if key_password is None else key_password.get_secret_value(),
    }
    tls_set = {option: str(value) for option, value in tls.items() if value is not None}
    if tls_set and protocol not in TLS_PROTOCOLS:
        raise ConfigError(
            f"{', '.join(_variable(option) for option in tls_set)} set, but PLATFORM_KAFKA_SECURITY_PROTOCOL="
            f"{protocol} does not use TLS: set it to SSL or SASL_SSL, or unset them."
        )
    config.update(tls_set)
    username, password = settings.kafka_sasl_username, settings.kafka_sasl_password
    if protocol in SASL_PROTOCOLS:
        if not username or password is None:
            raise ConfigError(
                f"PLATFORM_KAFKA_SECURITY_PROTOCOL={protocol} logs in with SASL: set PLATFORM_KAFKA_SASL_USERNAME "
                "and PLATFORM_KAFKA_SASL_PASSWORD."
            )
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = username
        config["sasl.password"] = password.get_secret_value()
    elif username or password is not None:
        raise ConfigError(
            f"PLATFORM_KAFKA_SASL_USERNAME or PLATFORM_KAFKA_SASL_PASSWORD set, but PLATFORM_KAFKA_SECURITY_PROTOCOL="
            f"{protocol} does not log in: set it to SASL_SSL (or SASL_PLAINTEXT), or unset them."
        )
    return config


def _variable(option: str) -> str:
    """The setting behind a librdkafka option: ``ssl.ca.location`` -> ``PLATFORM_KAFKA_SSL_CA_LOCATION``."""
    return "PLATFORM_KAFKA_" + option.replace(".", "_").upper()
