"""The production compose stack validates and keeps its shape: pinned images, a three-node KRaft cluster behind
TLS and SASL, PostgreSQL, MinIO for the warehouse's files, Trino on the Iceberg catalog.

Validation uses docker-compose 1.29.2 (v1) from the tools venv that `make test` creates (tests/compose.py):
it checks the file offline, with no Docker engine. The file is written so that the ``docker compose``
plugin (v2) reads it the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from textwrap import dedent
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.compose import ComposeFileError, docker_compose, resolve

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# Services of the platform image (they share its environment and the warehouse volume).
DAGSTER_SERVICES = ("code-location", "dagster-webserver", "dagster-daemon", "api", "sql")
KAFKA_BROKERS = ("kafka-1", "kafka-2", "kafka-3")
REQUIRED_SERVICES = (
    *KAFKA_BROKERS,
    "kafka-init",
    "schema-registry",
    "postgres",
    "minio",
    "minio-init",
    *DAGSTER_SERVICES,
    "trino",
)
# Services that read or write the Iceberg warehouse, so start after its bucket exists.
WAREHOUSE_SERVICES = (*DAGSTER_SERVICES, "exporter")
# The variables the file requires (`${VAR:?...}`), as an operator's .env would give them.
MAKE_DEV_CA = REPO_ROOT / "deploy" / "kafka" / "make-dev-ca.sh"
# An exact release, optionally with a variant suffix: 4.1.0, 3.11.14-slim-bookworm, 16.10-bookworm.
# Three numbers, because 3.11 or 4.1 float to the newest patch release; two for images whose exact
# releases have two (PostgreSQL >= 10 is major.minor, so 16 floats but 16.10 is one release), one for
# images released as a single number (Trino: 478 is one release, and no 478.x tag exists).
VERSION_TAG = re.compile(r"^v?(?P<numbers>\d+(\.\d+)*)([-_+][A-Za-z0-9_.+-]+)?$")
TWO_NUMBER_RELEASES = {"postgres"}
# MinIO names each release by its UTC build time instead (RELEASE.2025-09-07T16-13-09Z, optionally -cpuv1).
TIMESTAMP_RELEASES = {"minio", "mc"}
TIMESTAMP_TAG = re.compile(r"^RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z(-[a-z0-9]+)?$")
ONE_NUMBER_RELEASES = {"trino"}
TRINO_CATALOG = REPO_ROOT / "deploy" / "trino" / "catalog" / "iceberg.properties"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
# `NAME=` (a secret to fill in) or `# NAME=default` (optional), in .env.example.
ENV_EXAMPLE_LINE = re.compile(r"^(?P<optional>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$", re.MULTILINE)
# Each ${NAME...} compose interpolates ($${NAME} is a literal $ for the container's shell), and which are
# required (${NAME:?message}).
INTERPOLATED = re.compile(r"(?<!\$)\$\{(?P<name>[A-Z][A-Z0-9_]*)(?P<required>:\?)?")


def secrets() -> dict[str, str]:
    """A value for every variable compose requires: what a filled-in .env holds."""
    return {name: f"test-{name.lower().replace('_', '-')}" for name in required_variables()}


def required_variables() -> list[str]:
    """The variables compose refuses to start without, in the order they first appear."""
    found = INTERPOLATED.finditer(COMPOSE_FILE.read_text())
    return list(dict.fromkeys(match["name"] for match in found if match["required"]))


@cache
def resolved_config() -> dict[str, Any]:
    """The configuration as compose resolves it with every secret set: anchors merged, variables interpolated."""
    return resolve(COMPOSE_FILE, secrets())


def unpinned_reason(reference: str) -> str | None:
    """Why an image reference is not pinned to an explicit version, or None when it is."""
    if "$" in reference:
        return "uses a variable"
    if "@sha256:" in reference:
        return None
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag at all (the colon, if any, belonged to a registry port)
        return "has no tag (means latest)"
    if tag == "latest":
        return "is tagged latest"
    if name.rsplit("/", 1)[-1] in TIMESTAMP_RELEASES:
        return None if TIMESTAMP_TAG.match(tag) else f"tag {tag!r} is not an exact release (RELEASE.<UTC time>Z)"
    version = VERSION_TAG.match(tag)
    image = name.rsplit("/", 1)[-1]
    needed = 1 if image in ONE_NUMBER_RELEASES else 2 if image in TWO_NUMBER_RELEASES else 3
    if version is None or version["numbers"].count(".") + 1 < needed:
        return f"tag {tag!r} is not an exact release (needs {needed} version numbers)"
    return None


def dockerfile_base_images(dockerfile: Path) -> list[str]:
    """The external images a Dockerfile builds FROM (earlier stages and scratch excluded)."""
    images: list[str] = []
    stages: set[str] = set()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        words = [word for word in words[1:] if not word.startswith("--")]  # --platform=...
        image = words[0]
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())
        if image.lower() not in stages and image != "scratch":
            images.append(image)
    return images


def test_compose_file_validates_with_env_example_filled_in(tmp_path: Path) -> None:
    """What a user does: copy .env.example to .env and fill in each secret."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        ENV_EXAMPLE_LINE.sub(
            lambda line: line[0] if line["optional"] else f"{line['name']}={secrets()[line['name']]}",
            ENV_EXAMPLE.read_text(),
        )
    )
    result = docker_compose(COMPOSE_FILE, "config", "-q", env_file=env_file)
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"
    # A ${VAR} with neither a default (:-) nor an error (:?) silently becomes an empty string.
    assert "variable is not set" not in result.stderr, result.stderr


def test_env_example_documents_every_variable_and_no_secret_has_a_value() -> None:
    documented = {line["name"]: line for line in ENV_EXAMPLE_LINE.finditer(ENV_EXAMPLE.read_text())}
    interpolated = {match["name"] for match in INTERPOLATED.finditer(COMPOSE_FILE.read_text())}
    assert sorted(documented) == sorted(interpolated), "document each variable compose reads in .env.example"
    required = {name for name, line in documented.items() if not line["optional"]}
    assert sorted(required) == sorted(required_variables()), "a secret is `NAME=` in .env.example, the rest `# NAME=`"
    assert {name: documented[name]["value"] for name in required} == dict.fromkeys(required, ""), (
        "no real or example secrets in .env.example: compose then stops until each is set"
    )


@pytest.mark.parametrize(
    "missing",
    [
        "POSTGRES_PASSWORD",
        "POSTGRES_WRITER_PASSWORD",
        "POSTGRES_READER_PASSWORD",
        "KAFKA_SASL_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "MINIO_KMS_SECRET_KEY",
    ],
)
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    """No default secrets: unset or empty, compose stops and says which variable and where to look."""
    assert missing in required_variables()
    for value in (None, ""):
        environment = {name: value for name, value in secrets().items() if name != missing}
        if value is not None:
            environment[missing] = value
        with pytest.raises(ComposeFileError, match=re.escape(f": set {missing} (see .env.example)")):
            resolve(COMPOSE_FILE, environment)


def test_platform_services_connect_as_the_writer_role_not_the_superuser() -> None:
    services = resolved_config()["services"]
    writer = secrets()["POSTGRES_WRITER_PASSWORD"]
    superuser = secrets()["POSTGRES_PASSWORD"]
    postgres = services["postgres"]["environment"]
    assert {key: postgres[key] for key in ("POSTGRES_PASSWORD", "POSTGRES_WRITER_PASSWORD")} == {
        "POSTGRES_PASSWORD": superuser,
        "POSTGRES_WRITER_PASSWORD": writer,
    }
    assert postgres["POSTGRES_READER_PASSWORD"] == secrets()["POSTGRES_READER_PASSWORD"]
    for name in DAGSTER_SERVICES:
        environment = services[name]["environment"]
        for key in ("PLATFORM_CATALOG_URI", "PLATFORM_DAGSTER_STORAGE_URL"):
            url = urlsplit(str(environment[key]))
            assert (url.username, url.password) == ("platform_writer", writer), f"{name}: {key}"
        assert (environment["DAGSTER_PG_USER"], environment["DAGSTER_PG_PASSWORD"]) == ("platform_writer", writer)
    holders = sorted(name for name, service in services.items() if superuser in str(service.get("environment")))
    assert holders == ["postgres"], "only the postgres service may know the superuser's password"


def test_interpolation_applies_defaults_and_requires_variables(tmp_path: Path) -> None:
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(
        dedent(
            """\
            services:
              app:
                image: analytics-platform:0.1.0
                environment:
                  PORT: ${PORT:-3000}
                  URL: postgresql://${PG_USER:-analytics}:${PG_PASSWORD:?set PG_PASSWORD}@postgres/iceberg
            """
        )
    )

    def app_environment(variables: dict[str, str]) -> dict[str, str]:
        return dict(resolve(compose_file, variables)["services"]["app"]["environment"])

    assert app_environment({"PG_PASSWORD": "s3cret"}) == {
        "PORT": "3000",
        "URL": "postgresql://analytics:s3cret@postgres/iceberg",
    }
    # `:-` replaces an empty value as well as an unset one.
    assert app_environment({"PG_PASSWORD": "s3cret", "PORT": "", "PG_USER": "ops"}) == {
        "PORT": "3000",
        "URL": "postgresql://ops:s3cret@postgres/iceberg",
    }
    # `:?` rejects an empty value as well as an unset one, with the file's own message.
    for missing in ({}, {"PG_PASSWORD": ""}):
        with pytest.raises(ComposeFileError, match="set PG_PASSWORD"):
            resolve(compose_file, missing)


KAFKA = """\
services:
  kafka:
    image: apache/kafka:4.1.0
"""
BROKEN_FILES = {
    "unknown service key": (
        KAFKA + "    healthchek:\n      test: [CMD, 'true']\n",
        "Unsupported config option for services.kafka: 'healthchek'",
    ),
    "unknown depends_on condition": (
        KAFKA + "  app:\n    image: analytics-platform:0.1.0\n    depends_on:\n      kafka:\n"
        "        condition: service_ready\n",
        'services.app.depends_on.kafka.condition contains "service_ready", which is an invalid type',
    ),
    "depends_on an undefined service": (
        KAFKA + "    depends_on: [zookeeper]\n",
        "Service 'kafka' depends on service 'zookeeper' which is undefined",
    ),
    "named volume not declared": (
        KAFKA + "    volumes: [kafka-data:/var/lib/kafka/data]\n",
        'is used in service "kafka" but no declaration was found in the volumes section',
    ),
    "required variable missing": (
        KAFKA + "    environment:\n      CLUSTER_ID: ${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID in .env}\n",
        "set KAFKA_CLUSTER_ID in .env",
    ),
}


@pytest.mark.parametrize(("content", "reason"), BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_invalid_compose_file_is_rejected_with_its_reason(tmp_path: Path, content: str, reason: str) -> None:
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(content)
    with pytest.raises(ComposeFileError, match=re.escape(reason)):
        resolve(compose_file)


def test_services_exist() -> None:
    compose = resolved_config()
    missing = [name for name in REQUIRED_SERVICES if name not in compose["services"]]
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_every_image_is_pinned() -> None:
    compose = resolved_config()
    problems: list[str] = []
    for name, service in compose["services"].items():
        references = []
        if "image" in service:
            references.append((f"service {name}", service["image"]))
        if "build" in service:
            build = service["build"]
            build = build if isinstance(build, dict) else {"context": build}
            dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
            bases = dockerfile_base_images(dockerfile)
            assert bases, f"{dockerfile} has no FROM"
            where = f"service {name}: FROM in {dockerfile.relative_to(REPO_ROOT)}"
            references += [(where, base) for base in bases]
        assert references, f"service {name} has neither image nor build"
        for where, reference in references:
            reason = unpinned_reason(reference)
            if reason:
                problems.append(f"{where}: {reference} {reason}")
    assert not problems, "images must be pinned to an explicit version:\n" + "\n".join(problems)


def test_pin_check_rejects_floating_references() -> None:
    floating = [
        "postgres",
        "postgres:latest",
        "postgres:16",
        "localhost:5000/kafka",
        "python:3.11-slim",
        "apache/kafka:4.1",
        "${IMAGE}",
        "minio/minio",
        "minio/minio:latest",
        "minio/minio:RELEASE.2025-09-07",
        "minio/mc:2025",
        "trinodb/trino",
        "trinodb/trino:latest",
    ]
    for reference in floating:
        assert unpinned_reason(reference), reference
    pinned = [
        "apache/kafka:4.1.0",
        "postgres:16.10-bookworm",
        "python:3.11.14-slim-bookworm",
        "localhost:5000/kafka:4.1.0",
        "analytics-platform:0.1.0",
        "postgres@sha256:" + "0" * 64,
        "minio/minio:RELEASE.2025-09-07T16-13-09Z",
        "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z-cpuv1",
        "trinodb/trino:478",
    ]
    for reference in pinned:
        assert unpinned_reason(reference) is None, reference


def _kafka_environment(name: str) -> dict[str, str]:
    """A service's environment with every value as the container sees it: a string."""
    return {key: str(value) for key, value in resolved_config()["services"][name].get("environment", {}).items()}


def _listeners(environment: dict[str, str], key: str) -> dict[str, str]:
    """``{listener name: host:port}`` of a ``NAME://host:port,...`` list."""
    return dict(tuple(entry.split("://", 1)) for entry in environment.get(key, "").split(",") if entry)


def _bind_mounts(service: str) -> dict[str, str]:
    """``{target: source relative to the repository}`` of a service's bind mounts."""
    mounts = {}
    for volume in resolved_config()["services"][service].get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        if source.startswith("/"):
            mounts[target] = str(Path(source).relative_to(REPO_ROOT))
    return mounts


def test_kafka_runs_three_kraft_nodes_without_zookeeper() -> None:
    services = resolved_config()["services"]
    voters = {}
    for name in KAFKA_BROKERS:
        environment = _kafka_environment(name)
        roles = {role.strip() for role in environment.get("KAFKA_PROCESS_ROLES", "").split(",")}
        assert roles == {"broker", "controller"}, f"{name}: KAFKA_PROCESS_ROLES={roles}"
        assert not any(key.startswith("KAFKA_ZOOKEEPER") for key in environment), name
        voters[name] = environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        assert environment["CLUSTER_ID"] == _kafka_environment(KAFKA_BROKERS[0])["CLUSTER_ID"], name
        assert f"{name}:9092" in _listeners(environment, "KAFKA_ADVERTISED_LISTENERS").values(), name
        assert services[name]["healthcheck"]["test"], name
    # One quorum of the three nodes, each voting under its own node id.
    assert set(voters.values()) == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}, voters
    assert [_kafka_environment(name)["KAFKA_NODE_ID"] for name in KAFKA_BROKERS] == ["1", "2", "3"]
    assert not [
        name
        for name, service in services.items()
        if "zookeeper" in name.lower() or "zookeeper" in str(service.get("image", "")).lower()
    ]


def test_kafka_replicates_every_topic_three_times_with_two_in_sync() -> None:
    for name in KAFKA_BROKERS:
        environment = _kafka_environment(name)
        replication = {
            key: environment.get(key) for key in environment if key.endswith(("REPLICATION_FACTOR", "MIN_ISR"))
        }
        assert replication == {
            "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "3",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "2",
        }, name
        assert environment["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
    for name in DAGSTER_SERVICES:  # the topics the platform creates: event, dead-letter, metrics
        environment = resolved_config()["services"][name]["environment"]
        assert str(environment["PLATFORM_TOPIC_REPLICATION_FACTOR"]) == "3", name
        assert str(environment["PLATFORM_TOPIC_MIN_INSYNC_REPLICAS"]) == "2", name
    registry = resolved_config()["services"]["schema-registry"]["environment"]
    assert str(registry["SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR"]) == "3"


def test_kafka_listeners_are_tls_and_clients_log_in_with_sasl() -> None:
    for name in KAFKA_BROKERS:
        environment = _kafka_environment(name)
        protocols = dict(entry.split(":") for entry in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        listeners = _listeners(environment, "KAFKA_LISTENERS")
        assert {listener: protocols[listener] for listener in listeners} == {
            "CLIENT": "SASL_SSL",
            "HOST": "SASL_SSL",
            "BROKER": "SSL",
            "CONTROLLER": "SSL",
        }, name
        # The image's start script treats advertised listener names containing SSL:// or SASL_ as JKS setups.
        assert not re.search(r"SSL://|SASL_", environment["KAFKA_ADVERTISED_LISTENERS"]), name
        assert environment["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512", name
        for listener in ("CLIENT", "HOST"):
            jaas = environment[f"KAFKA_LISTENER_NAME_{listener}_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
            assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required"), name
        for listener in ("BROKER", "CONTROLLER"):
            assert environment[f"KAFKA_LISTENER_NAME_{listener}_SSL_CLIENT_AUTH"] == "required", name
        assert (environment["KAFKA_SSL_KEYSTORE_TYPE"], environment["KAFKA_SSL_TRUSTSTORE_TYPE"]) == ("PEM", "PEM")
        mounts = _bind_mounts(name)
        assert mounts["/etc/kafka/tls/own"] == f"deploy/kafka/certs/{name}", name
        assert mounts["/etc/kafka/tls/ca"] == "deploy/kafka/certs/ca", name
    for name in DAGSTER_SERVICES:
        environment = resolved_config()["services"][name]["environment"]
        assert environment["PLATFORM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert environment["PLATFORM_KAFKA_SASL_PASSWORD"] == secrets()["KAFKA_SASL_PASSWORD"], name
        ca = Path(environment["PLATFORM_KAFKA_SSL_CA_LOCATION"])
        assert _bind_mounts(name)[str(ca.parent)] == "deploy/kafka/certs/ca", name
    registry = resolved_config()["services"]["schema-registry"]["environment"]
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert registry["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == ",".join(
        f"SASL_SSL://{name}:9092" for name in KAFKA_BROKERS
    )


def test_make_dev_ca_writes_every_file_the_stack_mounts(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    environment = {**os.environ, "KAFKA_CERTS_DIR": str(certs)}
    subprocess.run([str(MAKE_DEV_CA)], env=environment, check=True, capture_output=True, timeout=60)
    for service in resolved_config()["services"]:
        for source in _bind_mounts(service).values():
            if source.startswith("deploy/kafka/certs/"):
                assert (certs / Path(source).relative_to("deploy/kafka/certs")).is_dir(), f"{service}: {source}"
    for leaf in (*KAFKA_BROKERS, "admin"):
        pem = certs / leaf / "tls.pem"
        assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----"), leaf  # PKCS#8, as Kafka's PEM keystore needs
        verify = ["openssl", "verify", "-CAfile", str(certs / "ca" / "ca.crt"), str(pem)]
        assert subprocess.run(verify, capture_output=True, text=True).stdout.strip() == f"{pem}: OK"
    # The CA's key is mounted nowhere, and a second run keeps the CA the clients already trust.
    assert not any(
        "ca-private" in source for service in resolved_config()["services"] for source in _bind_mounts(service).values()
    )
    ca = (certs / "ca" / "ca.crt").read_bytes()
    subprocess.run([str(MAKE_DEV_CA)], env=environment, check=True, capture_output=True, timeout=60)
    assert (certs / "ca" / "ca.crt").read_bytes() == ca


def test_dagster_services_use_postgres_and_kafka() -> None:
    compose = resolved_config()
    for name in DAGSTER_SERVICES:
        environment = compose["services"][name].get("environment", {})
        catalog = urlsplit(str(environment.get("PLATFORM_CATALOG_URI", "")))
        assert catalog.scheme.startswith("postgresql") and catalog.hostname == "postgres", (
            f"{name}: PLATFORM_CATALOG_URI must point at the postgres service, got {catalog.geturl()!r}"
        )
        assert catalog.path == "/iceberg", f"{name}: the catalog lives in the iceberg database"
        assert environment.get("DAGSTER_PG_HOST") == "postgres", name
        assert environment.get("PLATFORM_KAFKA_BOOTSTRAP_SERVERS") == "kafka-1:9092,kafka-2:9092,kafka-3:9092", name
        assert environment.get("PLATFORM_SCHEMA_REGISTRY_URL") == "http://schema-registry:8081", name
        mounts = [
            volume["target"] if isinstance(volume, dict) else str(volume).split(":")[1]
            for volume in compose["services"][name].get("volumes", [])
        ]
        assert "/var/lib/analytics-platform" in mounts, f"{name} must mount the shared platform volume (marts builds)"


def test_workspace_points_at_code_location() -> None:
    compose = resolved_config()
    workspace = yaml.safe_load((REPO_ROOT / "docker" / "workspace.yaml").read_text())
    [entry] = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == "code-location" and grpc["location_name"] == "analytics_platform"
    command = compose["services"]["code-location"]["command"]
    assert str(grpc["port"]) == command[command.index("-p") + 1]
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "/opt/dagster/app/docker/workspace.yaml" in compose["services"][name]["command"], name


def test_dagster_instance_uses_postgres_storage() -> None:
    instance = yaml.safe_load((REPO_ROOT / "docker" / "dagster.yaml").read_text())
    database = instance["storage"]["postgres"]["postgres_db"]
    assert {key: database[key] for key in ("username", "password", "hostname", "db_name")} == {
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["telemetry"] == {"enabled": False}


def test_dagster_instance_notices_dead_run_workers() -> None:
    """The compose instance fails runs whose worker died (heartbeats), and re-executes crashed runs only."""
    from analytics_platform.local.instance import instance_config
    from analytics_platform.settings import get_settings

    compose = yaml.safe_load((REPO_ROOT / "docker" / "dagster.yaml").read_text())
    local = instance_config(get_settings())
    for instance in (compose, local):
        assert instance["run_launcher"]["class"] == "HeartbeatRunLauncher"
        assert instance["run_launcher"]["module"] == "analytics_platform.defs.run_health"
        assert instance["run_monitoring"]["enabled"] is True
        assert instance["run_retries"] == {"enabled": True, "retry_on_asset_or_op_failure": False}
    assert compose["run_monitoring"] == local["run_monitoring"]


def test_api_service_launches_replays_on_the_webserver_and_links_for_a_browser() -> None:
    api = resolved_config()["services"]["api"]
    assert api["command"][:2] == ["analytics-platform", "serve"]
    environment = api["environment"]
    assert environment["PLATFORM_DAGSTER_WEBSERVER_URL"] == "http://dagster-webserver:3000"
    assert environment["PLATFORM_DAGSTER_UI_URL"].startswith("http://localhost:")
    assert [str(port).split(":")[0] for port in api["ports"]] == ["127.0.0.1"]  # loopback, like the webserver


def test_sql_service_serves_the_published_marts_on_loopback() -> None:
    sql = resolved_config()["services"]["sql"]
    assert sql["command"][:2] == ["analytics-platform", "sql"]
    assert [str(port).split(":")[0] for port in sql["ports"]] == ["127.0.0.1"]  # clear-text passwords
    assert sql["environment"]["PLATFORM_HOME"] == resolved_config()["services"]["api"]["environment"]["PLATFORM_HOME"]


def test_the_warehouse_lives_encrypted_in_minio_once_its_bucket_exists() -> None:
    services = resolved_config()["services"]
    minio = services["minio"]
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert minio["environment"]["MINIO_KMS_SECRET_KEY"] == secrets()["MINIO_KMS_SECRET_KEY"]  # SSE-S3 needs a KMS
    assert [str(port).split(":")[0] for port in minio["ports"]] == ["127.0.0.1"]
    init = services["minio-init"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    script = init["command"][0]
    assert "mc mb --ignore-existing platform/warehouse" in script
    assert "mc encrypt set sse-s3 platform/warehouse" in script  # objects written without the header too
    assert "$MINIO_ROOT_PASSWORD" in script and secrets()["MINIO_ROOT_PASSWORD"] not in script  # the container's
    for name in WAREHOUSE_SERVICES:
        service = services[name]
        environment = service["environment"]
        assert environment["PLATFORM_WAREHOUSE"] == "s3://warehouse/iceberg", name
        assert environment["PLATFORM_RAW_COLD_WAREHOUSE"].startswith("s3://warehouse/"), name
        assert environment["PLATFORM_S3_ENDPOINT"] == "http://minio:9000", name
        assert (environment["PLATFORM_S3_ACCESS_KEY_ID"], environment["PLATFORM_S3_SECRET_ACCESS_KEY"]) == (
            secrets()["MINIO_ROOT_USER"],
            secrets()["MINIO_ROOT_PASSWORD"],
        ), name
        assert environment["PLATFORM_S3_SSE"] == "AES256", name
        assert service["depends_on"]["minio-init"]["condition"] == "service_completed_successfully", name
    key = secrets()["MINIO_KMS_SECRET_KEY"]
    holders = sorted(name for name, service in services.items() if key in str(service.get("environment")))
    assert holders == ["minio"], "only MinIO may know its KMS key"


def _properties(path: Path) -> dict[str, str]:
    """A Java properties file's ``key=value`` lines (no continuation lines here)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_trino_reads_the_platforms_iceberg_catalog_and_files() -> None:
    """Trino's catalog `iceberg` is pyiceberg's SQL catalog: the same tables in the same database, under the
    same catalog name (a JDBC catalog sees only its own name's rows), and the MinIO bucket the files are in."""
    from analytics_platform.lakehouse.catalog import CATALOG_NAME

    trino = resolved_config()["services"]["trino"]
    assert _bind_mounts("trino") == {"/etc/trino/catalog": "deploy/trino/catalog"}
    catalog = _properties(TRINO_CATALOG)
    assert (catalog["connector.name"], catalog["iceberg.catalog.type"]) == ("iceberg", "jdbc")
    assert catalog["iceberg.jdbc-catalog.catalog-name"] == CATALOG_NAME
    platform_catalog = urlsplit(
        str(resolved_config()["services"]["code-location"]["environment"]["PLATFORM_CATALOG_URI"])
    )
    jdbc = urlsplit(catalog["iceberg.jdbc-catalog.connection-url"].removeprefix("jdbc:"))
    assert (jdbc.scheme, jdbc.hostname, jdbc.path) == ("postgresql", platform_catalog.hostname, platform_catalog.path)
    assert catalog["iceberg.jdbc-catalog.connection-user"] == platform_catalog.username
    assert (catalog["s3.endpoint"], catalog["s3.path-style-access"]) == ("http://minio:9000", "true")
    # Each secret comes from the container's environment, which compose fills from .env.
    referenced = {name for value in catalog.values() for name in re.findall(r"\$\{ENV:([A-Z0-9_]+)\}", value)}
    assert referenced == {"POSTGRES_WRITER_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    assert {name: trino["environment"][name] for name in referenced} == {name: secrets()[name] for name in referenced}
    assert {name: dependency["condition"] for name, dependency in trino["depends_on"].items()} == {
        "postgres": "service_healthy",
        "minio": "service_healthy",
    }
    assert trino["healthcheck"]["test"]
    assert [str(port).split(":")[0] for port in trino["ports"]] == ["127.0.0.1"]  # no authentication
