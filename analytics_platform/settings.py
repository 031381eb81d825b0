"""Typed platform settings, read from the environment (prefix ``PLATFORM_``) when asked for.

One home directory holds everything the embedded platform writes, so a demo or a test is one folder
to inspect or delete. Every location inside it can be pointed elsewhere (a PostgreSQL catalog, an
``s3://`` warehouse) without code changes. Settings are never read at import time: call
:func:`get_settings` where they are needed, so tests and CLIs can change the environment first.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analytics_platform.exceptions import ConfigError


class Settings(BaseSettings):
    """Where the platform keeps its state and how it talks to Kafka."""

    # An empty variable (PLATFORM_SCHEMA_DIR=) means unset, not "the current directory".
    model_config = SettingsConfigDict(env_prefix="PLATFORM_", extra="ignore", env_ignore_empty=True)

    home: Path = Field(
        default=Path(".platform"),
        description="Directory for all local state (catalog, warehouse, DuckDB marts, Dagster, broker).",
    )
    catalog_uri: str | None = Field(
        default=None,
        description="SQLAlchemy URI of the Iceberg SQL catalog. Default: SQLite file in the home directory. "
        "Production: postgresql+psycopg2://user:password@host:5432/db.",
    )
    warehouse: str | None = Field(
        default=None,
        description="Iceberg warehouse location (file:///... or s3://bucket/prefix). Default: <home>/warehouse.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="URL of an S3-compatible object store holding an s3:// warehouse, e.g. http://minio:9000 (its "
        "scheme decides TLS). Default: AWS S3 itself.",
    )
    s3_region: str = Field(
        default="us-east-1",
        description="Region of the warehouse's bucket (MinIO accepts any; on AWS, the bucket's own region).",
    )
    s3_access_key_id: str | None = Field(
        default=None,
        description="Access key id for the s3:// warehouse, with PLATFORM_S3_SECRET_ACCESS_KEY; DuckDB's reads (the "
        "marts builds) need both. Default: pyiceberg's AWS credential chain (AWS_ACCESS_KEY_ID, a profile, an "
        "instance role).",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None,
        description="Secret access key for the s3:// warehouse. Never logged or shown in the settings' repr.",
    )
    s3_path_style: bool | None = Field(
        default=None,
        description="Address buckets by path (http://host/bucket/key, what MinIO needs) rather than by virtual host "
        "(http://bucket.host/key). Default: path style when PLATFORM_S3_ENDPOINT is set, virtual host on AWS.",
    )
    s3_sse: Literal["none", "AES256", "aws:kms"] = Field(
        default="none",
        description="Server-side encryption every object pyiceberg writes to an s3:// warehouse asks for "
        "(x-amz-server-side-encryption): AES256 (SSE-S3, keys held by the store) or aws:kms (SSE-KMS, with "
        "PLATFORM_S3_SSE_KMS_KEY_ID); none leaves it to the bucket's default encryption "
        "(docs/security.md#encryption-at-rest). Any setting but none writes through pyiceberg's FsspecFileIO (s3fs), "
        "the FileIO that sends the header.",
    )
    s3_sse_kms_key_id: str | None = Field(
        default=None,
        description="KMS key (id, ARN or alias; on MinIO, a KES key name) for PLATFORM_S3_SSE=aws:kms. "
        "Default: the store's default KMS key.",
    )
    duckdb_dir: Path | None = Field(
        default=None,
        description="Directory of the DuckDB marts builds and the published pointer. Default: <home>/duckdb.",
    )
    dagster_home: Path | None = Field(
        default=None, description="DAGSTER_HOME used by the CLI and `make dev`. Default: <home>/dagster."
    )
    dagster_storage_url: str | None = Field(
        default=None,
        description="PostgreSQL URL for Dagster's run, event and schedule storage "
        "(postgresql+psycopg2://user:password@host:5432/db). Default: SQLite files in the Dagster home.",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers. Default: the embedded broker at 127.0.0.1:<broker_port>.",
    )
    broker_port: int = Field(default=19092, description="Port of the embedded Tansu broker.")
    broker_state_dir: Path | None = Field(
        default=None, description="Where the embedded broker's pid file and log go. Default: <home>/broker."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every Kafka client of the platform connects (librdkafka's security.protocol): SSL "
        "encrypts and verifies the brokers, SASL_SSL also logs in (docs/security.md#kafka-tls-and-sasl). "
        "PLAINTEXT and SASL_PLAINTEXT send everything in clear text: loopback or a trusted network only.",
    )
    kafka_ssl_ca_location: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates (ssl.ca.location), with SSL or "
        "SASL_SSL. Default: OpenSSL's default CA locations.",
    )
    kafka_ssl_certificate_location: Path | None = Field(
        default=None,
        description="PEM file of the client's certificate (ssl.certificate.location), for brokers that require "
        "TLS client authentication; with PLATFORM_KAFKA_SSL_KEY_LOCATION.",
    )
    kafka_ssl_key_location: Path | None = Field(
        default=None, description="PEM file of the client certificate's private key (ssl.key.location)."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted PLATFORM_KAFKA_SSL_KEY_LOCATION (ssl.key.password)."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism (sasl.mechanism) with SASL_SSL or SASL_PLAINTEXT. PLAIN sends the password "
        "itself: only over SASL_SSL.",
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user name (sasl.username); required with SASL_SSL or SASL_PLAINTEXT."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password (sasl.password); required with SASL_SSL or SASL_PLAINTEXT. Never logged or "
        "shown in the settings' repr.",
    )
    topic_partitions: int = Field(default=3, ge=1, description="Partitions per event topic on creation.")
    producer_linger_ms: int = Field(
        default=1000,
        ge=0,
        description="How long the platform's producers (the generator, `produce`, replays) gather a partition's "
        "messages into one record batch; flush() does not wait for it. The embedded broker reads slower with "
        "every stored batch (docs/performance.md#the-soak-again-2026-12-04), so the default trades up to a "
        "second of latency for fewer batches; on Apache Kafka, 5-100 ms is usual.",
    )
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of each topic the platform creates (event, dead-letter and metrics topics); at most "
        "the number of brokers. 3 on a production cluster, so a broker can fail without losing a message.",
    )
    topic_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of each topic the platform creates: with acks=all, a write succeeds once "
        "this many replicas have it (2 with a replication factor of 3). At most "
        "PLATFORM_TOPIC_REPLICATION_FACTOR. Default: the broker's min.insync.replicas.",
    )
    batch_max_events: int = Field(
        default=100_000,
        ge=1,
        description="Upper bound on events in one micro-batch: one Iceberg snapshot, and what an ingest run holds "
        "in memory at a time.",
    )
    run_max_events: int = Field(
        default=1_000_000,
        ge=1,
        description="Upper bound on events one ingest run lands, as consecutive micro-batches: fewer, longer runs "
        "spread Dagster's per-run cost over more events.",
    )
    ingest_follow_s: float = Field(
        default=600.0,
        ge=0,
        description="After landing its planned range, a sensor-launched ingest run keeps landing new messages for "
        "this long (0: stop at once), so a steady stream does not pay a run launch (~10 s) per micro-batch.",
    )
    ingest_workers_per_topic: int = Field(
        default=1,
        ge=1,
        description="Partition groups per topic that land at once: partition p belongs to group p mod this, and "
        "each group has its own sensor requests, run keys and runs, all appending to the topic's raw table "
        "(docs/scaling.md#partition-parallel-ingestion). More groups than partitions leave some idle. Above 1, "
        "raise max_concurrent_runs of the run queue to at least 2 x this x topics + 6.",
    )
    ingest_poll_s: float = Field(
        default=3.0,
        gt=0,
        description="How often a following ingest run looks for new messages; each look that finds some commits "
        "one snapshot per topic.",
    )
    marts_refresh_interval_s: float = Field(
        default=300.0,
        ge=0,
        description="Least time between the starts of two sensor-launched full marts builds (refresh_marts): a "
        "full build takes minutes of CPU, and the live follower keeps the per-minute facts fresh meanwhile.",
    )
    marts_refresh_max_busy_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Most of the time sensor-launched full marts builds take: after a build of t seconds the next "
        "starts at least t / share after it, beyond PLATFORM_MARTS_REFRESH_INTERVAL_S. A full build grows with the "
        "lake (it recomputes the non-daily marts and the day so far), so a longer build spaces the next one out "
        "instead of taking the cores ingestion needs; the marts freshness alert says when builds no longer keep up.",
    )
    marts_follow_s: float = Field(
        default=600.0,
        ge=0,
        description="How long a sensor-launched live follower run keeps the live facts (the per-minute marts) "
        "current before the sensor launches the next one: a run launch costs ~10 s.",
    )
    marts_live_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the live follower brings the live facts up to the latest raw snapshots (when "
        "they moved); each time costs a dbt run of the live models over the minutes the new rows touched.",
    )
    marts_live_max_busy_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Most of its time the live follower spends refreshing: after a refresh of t seconds it waits "
        "at least t x (1 / share - 1), beyond PLATFORM_MARTS_LIVE_INTERVAL_S. A refresh is a dbt process (~5 CPU s "
        "here, however few rows it brings in), so on a busy machine the follower refreshes less often instead of "
        "taking the cores ingestion needs; 1 refreshes back to back.",
    )
    raw_snapshots_kept: int = Field(
        default=10,
        ge=1,
        description="Snapshots a raw table keeps: past twice as many, ingestion expires all but this many "
        "(metadata only; their summaries go to raw.ingest_snapshots first). pyiceberg copies the table metadata, "
        "which lists every kept snapshot, a dozen times per commit: commit time grows with this number.",
    )
    compact_target_mb: int = Field(
        default=128,
        ge=1,
        description="Compaction rewrites a day partition's small data files into files of about this size (MB on "
        "disk); a file under three quarters of it counts as small. A rewrite holds about this much data in memory.",
    )
    compact_after_hours: float = Field(
        default=2.0,
        ge=0,
        description="A day partition is compacted once its day (UTC) ended this many hours ago, when it no longer "
        "receives data; events arriving later are compacted by a later run.",
    )
    compact_small_files: int = Field(
        default=50,
        ge=0,
        description="A day partition still receiving data (today's) is compacted alongside ingestion once it holds "
        "this many small files: the compact_when_small_files sensor requests the run, whose commit retries around "
        "ingestion's. Keeps the files per partition bounded during the day; 0: only finished days are compacted.",
    )
    orphan_grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="Files no snapshot references any more (of expired snapshots, rewritten by compaction, left by "
        "failed writes) are deleted once seen unreferenced for this long, so marts builds and queries still reading "
        "an older snapshot find them.",
    )
    raw_hot_days: int = Field(
        default=0,
        ge=0,
        description="Raw day partitions older than this many days move to PLATFORM_RAW_COLD_WAREHOUSE (same "
        "tables, still queryable); 0: every day stays where it was written.",
    )
    raw_cold_warehouse: str | None = Field(
        default=None,
        description="Location (file:///... or s3://bucket/prefix) raw partitions past PLATFORM_RAW_HOT_DAYS move to. "
        "Default: <home>/cold-warehouse.",
    )
    raw_retention_days: int = Field(
        default=0,
        ge=0,
        description="Raw day partitions (by event day) older than this many days are deleted, with the ingest "
        "lineage of that age; 0: kept forever.",
    )
    dead_letter_retention_days: int = Field(
        default=0,
        ge=0,
        description="Dead letters (and their replay records) older than this many days are deleted; 0: kept forever.",
    )
    raw_namespace: str = Field(default="raw", description="Iceberg namespace of the raw event tables.")
    pii_key: SecretStr | None = Field(
        default=None,
        description="Secret key of the HMAC-SHA256 that replaces the fields marked `pii` in the schemas (user ids) "
        "in every non-production copy of the marts (`analytics-platform export --pseudonymize`, docs/security.md"
        "#pii-and-pseudonymization); the same key gives the same pseudonyms, so joins hold. Required to pseudonymize.",
    )
    marts_namespace: str = Field(
        default="marts",
        description="Iceberg namespace every marts build also writes its marts to, for Trino, Spark or pyiceberg "
        "(docs/bi.md#the-marts-as-iceberg-tables).",
    )
    metrics_topic: str = Field(
        default="metrics.latest",
        description="Compacted Kafka topic that every marts build and live refresh sends the headline metrics to "
        "(docs/serving.md#the-metrics-topic); empty: send nothing.",
    )
    schema_dir: Path | None = Field(
        default=None,
        description="Schema registry directory (<event_type>/v<N>.avsc). Default: the package's contracts/schemas.",
    )
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent-compatible Schema Registry URL; when set, producers register each schema there "
        "and tag messages with its id. Default: the in-repo registry alone.",
    )
    dead_letter_topic: str = Field(
        default="dead-letter.events",
        description="Topic producers publish events that fail edge validation to (with the error and schema).",
    )
    max_event_bytes: int = Field(
        default=100_000, ge=1, description="Largest message (bytes) the batch gates accept as one event."
    )
    earliest_event_at: datetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC),
        description="Events timestamped before this are rejected as absurd (clock bugs, epoch zero).",
    )
    max_event_future_s: int = Field(
        default=3600, ge=0, description="How far past now (seconds) an event timestamp may be (client clock skew)."
    )
    dedup_window_events: int = Field(
        default=1_000_000,
        ge=0,
        description="A batch's event_ids are checked against this many most recently landed rows of the "
        "topic (0: only within the batch); duplicates go to raw.dead_letter.",
    )
    max_dead_letter_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="The raw asset check fails (and blocks the marts) above this share of dead letters.",
    )
    quality_window_hours: float = Field(
        default=24, gt=0, description="The asset checks look at rows ingested in this many recent hours."
    )
    raw_freshness_slo_s: float = Field(
        default=300.0,
        ge=60,
        description="Freshness objective of the raw tables of the event streams: Dagster's freshness policy and "
        "check on each alert when it has landed nothing for this long (docs/runbooks.md#raw-freshness). Not the "
        "reference data (product_changed, user_profile_changed), which changes when it changes. At least 60 "
        "(Dagster's least window).",
    )
    marts_live_freshness_slo_s: float = Field(
        default=300.0,
        ge=60,
        description="Freshness objective of the live facts (dbt tag `live`, the per-minute marts), which the live "
        "follower refreshes every PLATFORM_MARTS_LIVE_INTERVAL_S while new rows land "
        "(docs/runbooks.md#mart-freshness).",
    )
    marts_freshness_slo_s: float | None = Field(
        default=None,
        ge=60,
        description="Freshness objective of every other mart, rebuilt by full builds at most every "
        "PLATFORM_MARTS_REFRESH_INTERVAL_S while new rows land (docs/runbooks.md#mart-freshness). Default: three "
        "times PLATFORM_MARTS_REFRESH_INTERVAL_S, at least 900 (a build may fail once before it alerts).",
    )
    alert_webhook_url: str | None = Field(
        default=None,
        description="Where the Dagster-native alerts go (failed runs, raw tables and marts past their freshness "
        'objective, and back): a POST of a Slack-compatible payload, {"text": ...}, such as a Slack, Mattermost '
        "or Rocket.Chat incoming webhook. Default: logged at WARNING by the Dagster code server evaluating the "
        "sensors.",
    )
    traces_exporter: Literal["none", "console", "otlp"] = Field(
        default="none",
        description="Where OpenTelemetry traces go (docs/operations.md#tracing): none (nothing is recorded), console "
        "(each span printed as JSON on standard output) or otlp (to OTEL_EXPORTER_OTLP_ENDPOINT over http/protobuf, "
        "or gRPC with OTEL_EXPORTER_OTLP_PROTOCOL=grpc; needs `opentelemetry-exporter-otlp==1.45.1` installed).",
    )

    api_host: str = Field(
        default="127.0.0.1",
        description="Address the serving API (`analytics-platform serve`) listens on; 0.0.0.0 to serve other hosts.",
    )
    api_port: int = Field(default=8000, description="Port of the serving API.")
    sql_host: str = Field(
        default="127.0.0.1",
        description="Address the Postgres-wire SQL endpoint listens on. Passwords travel in clear text: keep "
        "loopback unless the network is trusted or TLS is terminated in front of it.",
    )
    sql_port: int = Field(default=15432, description="Port of the Postgres-wire SQL endpoint.")
    exporter_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics exporter (`analytics-platform exporter`, started by `make dev`) listens "
        "on; 0.0.0.0 for a Prometheus on another host.",
    )
    exporter_port: int = Field(
        default=9464, ge=1, le=65535, description="Port of the metrics exporter (its /metrics is for Prometheus)."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="YAML file of the API keys (their SHA-256, role and countries), written by "
        "`analytics-platform api-key create`. Default: <home>/api-keys.yaml.",
    )
    api_secret_file: Path | None = Field(
        default=None,
        description="File holding the secret that signs pagination cursors (created on first use; share it "
        "between API replicas). Default: <home>/api-secret.",
    )
    api_build_keep_s: float = Field(
        default=900.0,
        gt=0,
        description="How long the API keeps a marts build open after its last use, so the next pages of a "
        "paginated query read the build its first page did, although newer ones were published.",
    )
    replay_dedup_s: float = Field(
        default=3600.0,
        ge=0,
        description="For this long after a replay's run succeeded, the same request returns that run instead of "
        "launching another (while it runs, always); later, it runs again: dead letters or late rows may have "
        "arrived since.",
    )
    dagster_ui_url: str = Field(
        default="http://127.0.0.1:3000",
        description="Base URL of the Dagster UI, for the links to runs in the API's answers (as a browser reaches it).",
    )
    dagster_webserver_url: str | None = Field(
        default=None,
        description="Where the API reaches the Dagster webserver's GraphQL API to launch replays (in compose, "
        "http://dagster-webserver:3000). Default: PLATFORM_DAGSTER_UI_URL.",
    )
    superset_port: int = Field(default=8088, description="Port of Apache Superset (`analytics-platform bi start`).")
    superset_venv: Path | None = Field(
        default=None,
        description="Superset's own venv (it needs SQLAlchemy 1.4; ~700 MB), installed on first use from "
        "analytics_platform/bi/superset-requirements.txt. Point several homes, the tests and CI at one venv "
        "to install it once. Default: <home>/superset/venv.",
    )
    superset_admin_password: str | None = Field(
        default=None,
        description="Password of Superset's `admin` user, set on every start. Default: generated once into "
        "<home>/superset/admin-password (mode 0600).",
    )

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("broker_port", "api_port", "sql_port", "superset_port")
    @classmethod
    def _valid_port(cls, value: int, info: ValidationInfo) -> int:
        if not 0 < value < 65536:
            raise ConfigError(f"PLATFORM_{str(info.field_name).upper()}={value} is not a TCP port; choose 1-65535.")
        return value

    @field_validator("s3_sse_kms_key_id", mode="after")
    @classmethod
    def _kms_key_needs_kms(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and info.data.get("s3_sse") != "aws:kms":
            raise ConfigError(
                "PLATFORM_S3_SSE_KMS_KEY_ID is set but PLATFORM_S3_SSE is not aws:kms; set PLATFORM_S3_SSE=aws:kms "
                "to encrypt with that key, or unset the key id."
            )
        return value

    @field_validator("earliest_event_at", mode="after")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ConfigError(f"PLATFORM_EARLIEST_EVENT_AT={value} needs a time zone, e.g. 2000-01-01T00:00:00Z.")
        return value

    @property
    def schema_path(self) -> Path:
        from analytics_platform.contracts.registry import DEFAULT_SCHEMA_DIR

        return (self.schema_dir or DEFAULT_SCHEMA_DIR).expanduser().resolve()

    @property
    def catalog_sql_uri(self) -> str:
        return self.catalog_uri or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def warehouse_uri(self) -> str:
        return self.warehouse or (self.home / "warehouse").as_uri()

    @property
    def s3_path_style_addressing(self) -> bool:
        """PLATFORM_S3_PATH_STYLE, or its default: path style with a custom endpoint (MinIO), else virtual host."""
        return self.s3_path_style if self.s3_path_style is not None else self.s3_endpoint is not None

    @property
    def cold_warehouse_uri(self) -> str:
        return (self.raw_cold_warehouse or (self.home / "cold-warehouse").as_uri()).rstrip("/")

    @property
    def marts_freshness_slo(self) -> float:
        """PLATFORM_MARTS_FRESHNESS_SLO_S, or its default: three refresh intervals, at least 15 minutes."""
        return self.marts_freshness_slo_s or max(900.0, 3 * self.marts_refresh_interval_s)

    @property
    def duckdb_path(self) -> Path:
        return (self.duckdb_dir or self.home / "duckdb").expanduser().resolve()

    @property
    def dagster_home_path(self) -> Path:
        return (self.dagster_home or self.home / "dagster").expanduser().resolve()

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.broker_port}"

    @property
    def api_keys_path(self) -> Path:
        return (self.api_keys_file or self.home / "api-keys.yaml").expanduser().resolve()

    @property
    def api_secret_path(self) -> Path:
        return (self.api_secret_file or self.home / "api-secret").expanduser().resolve()

    @property
    def broker_dir(self) -> Path:
        return (self.broker_state_dir or self.home / "broker").expanduser().resolve()

    @property
    def superset_home_path(self) -> Path:
        """Superset's state: metadata DB, config, secret key, admin password, logs."""
        return self.home / "superset"

    @property
    def superset_venv_path(self) -> Path:
        return (self.superset_venv or self.superset_home_path / "venv").expanduser().resolve()


def get_settings() -> Settings:
    """Read settings from the environment now (not cached: tests change the environment)."""
    return Settings()


_DEFAULT_SENTENCE = re.compile(r"\s*Default: (?P<default>.+?)\.(?=\s|$)")
_TYPE_NAMES: dict[object, str] = {
    int: "integer",
    float: "number",
    str: "string",
    Path: "path",
    datetime: "timestamp with time zone",
    SecretStr: "secret string",
    bool: "boolean",
}


def settings_reference() -> str:
    """The configuration reference (``docs/configuration.md``, written by ``make docs``) as markdown.

    One row per :class:`Settings` field, in declaration order: its environment variable, its default and
    its description, so the page says exactly what the code reads. A field whose default is computed
    (``None`` in the class) shows the ``Default: ...`` sentence of its description instead, e.g.
    ``<home>/warehouse``; a test compares the page with this function's output.
    """
    prefix = str(Settings.model_config.get("env_prefix", ""))
    rows = []
    for name, info in Settings.model_fields.items():
        description = " ".join((info.description or "").split())
        if info.default is None:
            match = _DEFAULT_SENTENCE.search(description)
            default = _markdown(match.group("default")) if match else "unset"
            if match:
                description = (description[: match.start()] + description[match.end() :]).strip()
        else:
            default = f"`{_literal(info.default)}`"
        variable = f"`{prefix}{name.upper()}`"
        cells = [variable, default, _type_name(info.annotation, info.metadata), _markdown(description)]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(
        [
            "# Configuration",
            "",
            "<!-- Generated by `make docs` from the fields of analytics_platform/settings.py: edit their",
            "     descriptions there, then run `make docs`. tests/test_docs.py checks that this page is current. -->",
            "",
            f"Every setting is an environment variable with the prefix `{prefix}`, read when a command or a run",
            "starts, never at import: the same code location serves any environment, and a test can point it at a",
            "temporary home. An empty variable counts as unset. `<home>` stands for `PLATFORM_HOME`; relative paths",
            "resolve against the directory the command runs in. An `s3://` warehouse is configured by the",
            "`PLATFORM_S3_*` settings (docs/scaling.md#object-storage); further properties of the Iceberg catalog",
            "come from pyiceberg's own variables, e.g. `PYICEBERG_CATALOG__ANALYTICS_PLATFORM__S3__PROXY_URI`.",
            "",
            "| variable | default | type | meaning |",
            "| --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


def _literal(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _type_name(annotation: object, metadata: list[object]) -> str:
    """The field's type (``X | None`` is X: unset means its computed default) and its bounds."""
    kinds: tuple[object, ...] = getattr(annotation, "__args__", (annotation,))
    name = " or ".join(_TYPE_NAMES.get(kind) or str(kind) for kind in kinds if kind is not type(None))
    bounds = []
    for constraint in metadata:
        for attribute, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if (limit := getattr(constraint, attribute, None)) is not None:
                bounds.append(f"{symbol} {limit:g}")
    return f"{name} {', '.join(bounds)}" if bounds else name


def _markdown(text: str) -> str:
    """``text`` with ``<`` and ``>`` escaped outside code spans (else ``<home>`` renders as an HTML tag)."""
    parts = text.split("`")
    return "`".join(
        part if index % 2 else part.replace("<", "&lt;").replace(">", "&gt;") for index, part in enumerate(parts)
    )
