"""``analytics-platform``: run the embedded platform from a shell.

Every command reads its settings from ``PLATFORM_*`` environment variables (see ``settings.py``);
``--help`` on each command says what it does and what it needs.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import BaseModel

from analytics_platform.bi.commands import bi_app
from analytics_platform.exceptions import PlatformError
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.security import roles
from analytics_platform.security.redaction import redact
from analytics_platform.serving.replays import DaysReplay, DeadLettersReplay, OffsetsReplay
from analytics_platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from analytics_platform.serving.replays import Replay

T = TypeVar("T", bound=BaseModel)

app = typer.Typer(
    help="Event-driven analytics lakehouse: Kafka -> Iceberg -> dbt marts, in Dagster.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
broker_app = typer.Typer(help="The embedded Kafka-compatible broker (Tansu, memory-only).", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics, one per event type.", no_args_is_help=True)
offsets_app = typer.Typer(help="Kafka offsets stored in the raw Iceberg tables.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
schemas_app = typer.Typer(help="The versioned event schemas (the in-repo schema registry).", no_args_is_help=True)
dead_letters_app = typer.Typer(help="Messages that failed validation (raw.dead_letter).", no_args_is_help=True)
app.add_typer(offsets_app, name="offsets")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dead_letters_app, name="dead-letters")
replay_app = typer.Typer(
    help="Re-run part of the pipeline from a checkpoint, as a Dagster run (the API's POST /v1/replays). The same "
    "request twice runs once.",
    no_args_is_help=True,
)
app.add_typer(replay_app, name="replay")
api_key_app = typer.Typer(help="API keys of the serving API: roles and country limits.", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")
app.add_typer(bi_app, name="bi")  # Apache Superset (docs/bi.md)
maintain_app = typer.Typer(
    help="Lake maintenance, as the scheduled jobs do it (docs/operations.md#compaction).", no_args_is_help=True
)
app.add_typer(maintain_app, name="maintain")
db_app = typer.Typer(help="The PostgreSQL server of the Iceberg catalog and Dagster's storage.", no_args_is_help=True)
roles_app = typer.Typer(
    help="Least-privilege roles: platform_writer for the platform, bi_reader for BI tools (docs/security.md).",
    no_args_is_help=True,
)
db_app.add_typer(roles_app, name="roles")
app.add_typer(db_app, name="db")


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as error:
        _fail(f"invalid setting: {error}")
        raise


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _echo(message: str) -> None:
    typer.echo(message)


@broker_app.command("start")
def broker_start() -> None:
    """Start the embedded broker in the background on PLATFORM_BROKER_PORT (default 19092)."""
    status = embedded_broker.start(_settings())
    _echo(f"broker running (pid {status.pid}); bootstrap servers: {status.bootstrap_servers}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the embedded broker. Its log is in memory: every message is lost, Iceberg keeps its rows."""
    stopped = embedded_broker.stop(_settings())
    _echo("broker stopped" if stopped else "broker was not running")


@broker_app.command("status")
def broker_status() -> None:
    """Say whether the embedded broker runs, and its bootstrap address. Exit code 1 if it does not run."""
    status = embedded_broker.status(_settings())
    if status.running:
        _echo(f"running (pid {status.pid}); bootstrap servers: {status.bootstrap_servers}; log: {status.log_path}")
    else:
        _echo(
            f"not running (would listen on {status.bootstrap_servers}); start it with `analytics-platform broker start`"
        )
        raise typer.Exit(code=1)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[
        int | None, typer.Option(help="Partitions per topic (default PLATFORM_TOPIC_PARTITIONS).")
    ] = None,
) -> None:
    """Create the events.<type> topics that do not exist yet."""
    from analytics_platform.contracts.envelope import event_topics
    from analytics_platform.kafka.admin import create_topics

    settings = _settings()
    created = create_topics(settings, partitions or settings.topic_partitions)
    for topic in event_topics():
        _echo(f"{topic}: {'created' if topic in created else 'exists'}")


@app.command()
def generate(
    events: Annotated[int, typer.Option(help="How many events to produce.")] = 200_000,
    rate: Annotated[float | None, typer.Option(help="Events per second (default: as fast as possible).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same events.")] = 42,
    days: Annotated[int, typer.Option(help="Simulated days the sessions spread over.")] = 3,
    start: Annotated[datetime | None, typer.Option(help="First simulated day (UTC), default 2026-11-01.")] = None,
    live: Annotated[bool, typer.Option(help="Produce forever, stamped with the wall clock (for `make dev`).")] = False,
    reference_data: Annotated[
        bool, typer.Option(help="Also produce the product catalog and user profiles, with mid-stream changes.")
    ] = True,
    anomaly: Annotated[
        str | None,
        typer.Option(
            help="Inject a data-quality incident the anomaly checks should find: volume-drop, volume-spike, "
            "error-spike, dead-letter-spike, funnel-dip, null-drift or unknown-fields (docs/operations.md)."
        ),
    ] = None,
    at: Annotated[datetime | None, typer.Option(help="When the --anomaly starts (UTC, inside the days).")] = None,
    anomaly_minutes: Annotated[int, typer.Option("--for", help="How long the --anomaly lasts, in minutes.")] = 60,
) -> None:
    """Produce a synthetic e-commerce stream (sessions flowing visit -> cart -> checkout -> purchase)."""
    from datetime import UTC, timedelta

    from analytics_platform.kafka.admin import create_topics
    from analytics_platform.kafka.producer import producer_options, publish
    from analytics_platform.sim.generator import DEFAULT_START, Anomaly, generate_events, live_sessions

    incident = None
    if anomaly is not None:
        if at is None or live:
            _fail("--anomaly needs --at (when it starts, inside the generated days) and cannot be --live")
        try:
            incident = Anomaly(anomaly, (at or DEFAULT_START).replace(tzinfo=UTC), timedelta(minutes=anomaly_minutes))
        except ValueError as error:
            _fail(str(error))
    settings = _settings()
    create_topics(settings, settings.topic_partitions)
    if live:
        stream = itertools.chain.from_iterable(live_sessions(seed))
        _echo(f"producing a live stream at {rate or 'max'} events/s to {settings.bootstrap_servers}; Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            publish(stream, settings, rate=rate or 20.0, **producer_options(settings))
        return
    first_day = start.replace(tzinfo=UTC) if start else DEFAULT_START
    extra = " plus the catalog and user profiles" if reference_data else ""
    _echo(f"generating {events:,} session events{extra} over {days} day(s) from {first_day:%Y-%m-%d} (seed {seed}) ...")
    try:
        stream_events = generate_events(
            events,
            seed=seed,
            days=days,
            start=first_day,
            reference_data=reference_data,
            anomalies=[incident] if incident else [],
        )
    except ValueError as error:
        _fail(str(error))
        raise
    if incident is not None:
        _echo(f"  with a {incident.kind} from {incident.at:%Y-%m-%dT%H:%M}Z to {incident.end:%Y-%m-%dT%H:%M}Z")
    started = time.monotonic()
    delivered = publish(
        stream_events,
        settings,
        rate=rate,
        progress=lambda n: _echo(f"  produced {n:,}/{len(stream_events):,}") if n % 50_000 == 0 else None,
        on_reject=lambda rejection: _echo(f"  rejected at the edge: {rejection.error}"),
        **producer_options(settings),
    )
    elapsed = time.monotonic() - started
    _echo(
        f"produced {delivered:,} events in {elapsed:.1f}s ({delivered / max(elapsed, 1e-9):,.0f}/s), all acknowledged"
    )


@app.command()
def ingest(
    topic: Annotated[list[str] | None, typer.Option(help="Topic(s) to ingest (default: every events.* topic).")] = None,
) -> None:
    """Land everything new in Kafka into the raw Iceberg tables, batch by batch, through the sensors' job."""
    from analytics_platform.contracts.envelope import event_topics
    from analytics_platform.local.orchestration import ingest_through_dagster

    settings = _settings()
    for name in topic or event_topics():
        total = 0
        for landed, dead in ingest_through_dagster(settings, name):
            total += landed
            _echo(f"{name}: landed {landed:,} rows, {dead:,} dead letters")
        _echo(f"{name}: caught up ({total:,} rows this pass)")


VERBOSE_HELP = "Stream dbt's and Dagster's run log here instead of writing it to <home>/logs/."


@app.command()
def build(verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False) -> None:
    """Build every dbt model through Dagster into a new DuckDB file and publish it atomically."""
    from analytics_platform.local.orchestration import build_marts

    settings = _settings()
    log_path = None if verbose else settings.home / "logs" / "build.log"
    if log_path:
        _echo(f"building the marts (raw quality checks, snapshots, models, daily facts); dbt's output: {log_path}")
    elapsed = build_marts(settings, log_path=log_path)
    _echo(f"marts built and published in {elapsed:.1f}s: {settings.duckdb_path / 'warehouse.duckdb'}")


@app.command()
def backfill(
    first: Annotated[
        datetime, typer.Option("--from", help="First UTC day to rebuild (YYYY-MM-DD).", formats=["%Y-%m-%d"])
    ],
    last: Annotated[datetime, typer.Option("--to", help="Last UTC day to rebuild, inclusive.", formats=["%Y-%m-%d"])],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Delete and rebuild the daily facts of exactly these days (one ranged Dagster run), e.g. after late events."""
    from analytics_platform.local.orchestration import backfill_daily

    if last < first:
        _fail(f"--to {last:%Y-%m-%d} is before --from {first:%Y-%m-%d}")
    settings = _settings()
    log_path = None if verbose else settings.home / "logs" / "backfill.log"
    if log_path:
        _echo(f"rebuilding {first:%Y-%m-%d} .. {last:%Y-%m-%d} after the raw quality checks; dbt's output: {log_path}")
    elapsed = backfill_daily(settings, first.date(), last.date(), log_path=log_path)
    _echo(f"daily facts of {first:%Y-%m-%d} .. {last:%Y-%m-%d} rebuilt and published in {elapsed:.1f}s")


@app.command()
def export(
    destination: Annotated[Path, typer.Argument(help="The new DuckDB file to write (must not exist).")],
    pseudonymize: Annotated[
        bool,
        typer.Option(
            "--pseudonymize",
            help="Replace the pii columns with HMAC-SHA256 pseudonyms keyed by PLATFORM_PII_KEY (required: "
            "a copy of the marts leaves production only pseudonymized).",
        ),
    ] = False,
) -> None:
    """Copy the published marts' tables into a new DuckDB file for non-production use (docs/security.md)."""
    from analytics_platform.security.pseudonymize import export_pseudonymized

    if not pseudonymize:
        _fail(
            "an export leaves production, so it must be pseudonymized: pass --pseudonymize (and set PLATFORM_PII_KEY)"
        )
    report = export_pseudonymized(_settings(), destination)
    for table, columns in sorted(report.pseudonymized.items()):
        _echo(f"{table}: pseudonymized {', '.join(columns)}")
    _echo(f"exported {len(report.tables)} tables ({sum(report.tables.values()):,} rows) to {report.destination}")


@app.command("erase-user")
def erase_user_command(
    user_id: Annotated[str, typer.Argument(help="The user's id, as in the events' user_id.")],
    requested_by: Annotated[
        str | None, typer.Option(help="Who asked for it, for the audit entry (default: the OS user).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user's rows from the raw tables, dead letters, their history and the marts (right to be
    forgotten); record it in audit.erasures (docs/security.md#erasure-right-to-be-forgotten). Irreversible."""
    from analytics_platform.security.erasure import erase_user

    settings = _settings()
    if not yes:
        typer.confirm(f"erase every trace of {user_id} from the lake and the marts? This cannot be undone", abort=True)
    report = erase_user(settings, user_id, requested_by=requested_by, progress=_echo)
    _echo(
        f"erased {user_id}: {report.raw_rows_deleted:,} raw rows and dead letters, "
        f"{sum(report.marts_rows_deleted.values()):,} mart rows; audit entry {report.erasure_id} in audit.erasures"
    )


@app.command()
def summary() -> None:
    """Print events landed per type, dead letters, daily active users and the funnel."""
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.local import report

    settings = _settings()
    _echo(report.render(report.collect(load_catalog(settings), settings)))


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="Events to generate.")] = 200_000,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
) -> None:
    """End to end: broker, generated stream, sensor-driven ingestion, dbt build, summary; then stop."""
    from analytics_platform.local.demo import run_demo

    run_demo(_settings(), events=events, days=days, seed=seed, echo=_echo)


@app.command()
def dev(
    rate: Annotated[
        float, typer.Option(help="Events per second of the live generator; 0 runs none (produce your own).")
    ] = 20.0,
    port: Annotated[int, typer.Option(help="Port of the Dagster webserver.")] = 3000,
) -> None:
    """Broker + live generator + `dagster dev` (webserver and daemon, sensors on), each restarted if it dies.
    Ctrl-C stops all."""
    from analytics_platform.local.dev import run_dev

    run_dev(_settings(), rate=rate, port=port, echo=_echo)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default PLATFORM_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PLATFORM_API_PORT, 8000).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """The serving API alone (REST at /v1, OpenAPI docs at /docs), for compose and production."""
    import uvicorn

    settings = _settings()
    host, port = host or settings.api_host, port or settings.api_port
    _echo(f"serving the API on http://{host}:{port} (docs: http://{host}:{port}/docs); Ctrl-C stops it")
    uvicorn.run(
        "analytics_platform.serving.api.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@app.command()
def exporter(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default PLATFORM_EXPORTER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PLATFORM_EXPORTER_PORT, 9464).")] = None,
    cache_s: Annotated[float, typer.Option(help="A scrape this soon after the last gets the same figures.")] = 5.0,
) -> None:
    """The platform's metrics on /metrics for Prometheus: lag, ingress/egress, latency, dead letters, freshness,
    failed runs (docs/operations.md#metrics). Reads Kafka, Iceberg, the marts and Dagster's storage on scrape."""
    from analytics_platform.operations.exporter import serve_exporter

    settings = _settings()
    serve_exporter(
        settings, host or settings.exporter_host, port or settings.exporter_port, cache_s=cache_s, echo=_echo
    )


@app.command()
def ops(
    prometheus_port: Annotated[int, typer.Option(help="Port of Prometheus.")] = 9090,
    alertmanager_port: Annotated[int, typer.Option(help="Port of Alertmanager.")] = 9093,
    webhook_url: Annotated[
        str | None, typer.Option(help="Also send alerts (and their resolution) to this webhook.")
    ] = None,
) -> None:
    """Prometheus and Alertmanager on the shipped config (ops/), scraping the exporter and the API of these
    settings, data under <home>/ops; Ctrl-C stops both. Needs Debian's prometheus and prometheus-alertmanager."""
    from analytics_platform.operations.prometheus import run_ops

    run_ops(
        _settings(),
        prometheus_port=prometheus_port,
        alertmanager_port=alertmanager_port,
        webhook_url=webhook_url,
        echo=_echo,
    )


@app.command("sql")
def sql_endpoint(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default PLATFORM_SQL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PLATFORM_SQL_PORT, 15432).")] = None,
) -> None:
    """The Postgres-wire SQL endpoint on the published marts, for psql and BI tools. Log in with an API key's
    name as the user and the key as the password (role analyst; country-limited keys see their rows only)."""
    from analytics_platform.bi.sql_endpoint import serve as serve_sql

    settings = _settings()
    host, port = host or settings.sql_host, port or settings.sql_port
    _echo(
        f"serving SQL on postgresql://{host}:{port}/warehouse (user: an API key's name, password: the key); "
        "Ctrl-C stops it"
    )
    serve_sql(settings, host, port)


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key (unique), e.g. dashboards.")],
    role: Annotated[str, typer.Option(help="viewer (metrics), analyst (+ raw events) or operator (+ replays).")],
    countries: Annotated[
        str | None, typer.Option(help="Comma-separated ISO country codes the key is limited to (default: all).")
    ] = None,
) -> None:
    """Create an API key and print it (once: only its hash is stored, in PLATFORM_API_KEYS_FILE)."""
    from analytics_platform.serving.access import KeyStore, Role

    if role not in Role.__members__:
        _fail(f"--role must be one of {', '.join(Role.__members__)}, got {role!r}")
    store = KeyStore(_settings().api_keys_path)
    key = store.create(name, Role[role], countries.split(",") if countries is not None else None)
    typer.secho(f"created API key {name!r} ({role}) in {store.path}; it is shown only now:", err=True)
    _echo(key)


@api_key_app.command("list")
def api_key_list() -> None:
    """The API keys by name, with role and country limit (never the keys)."""
    from analytics_platform.serving.access import KeyStore

    keys = KeyStore(_settings().api_keys_path).all()
    for key in keys:
        _echo(f"{key.name}\t{key.role.name}\t{','.join(sorted(key.countries)) if key.countries else 'all countries'}")
    if not keys:
        _echo("no API keys yet; create one with `analytics-platform api-key create NAME --role viewer`")


@api_key_app.command("revoke")
def api_key_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke an API key: a running API refuses it from its next request."""
    from analytics_platform.serving.access import KeyStore

    if not KeyStore(_settings().api_keys_path).revoke(name):
        _fail(f"no API key named {name!r}; `analytics-platform api-key list` shows them")
    _echo(f"revoked {name!r}")


@offsets_app.command("show")
def offsets_show() -> None:
    """Print, per topic, the next offset to read as stored in its raw table's latest ingest snapshot."""
    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.offsets import StoredOffsets, stored_offsets
    from analytics_platform.lakehouse.tables import open_raw_table

    settings = _settings()
    catalog = load_catalog(settings)
    for event_type in event_types().values():
        table = open_raw_table(catalog, settings, event_type)
        stored = stored_offsets(table, event_type.topic) if table is not None else StoredOffsets(event_type.topic)
        _echo(
            f"{event_type.topic}: next offsets {stored.next_offsets or '{} (nothing landed)'} "
            f"(snapshot {stored.snapshot_id})"
        )


@offsets_app.command("reset")
def offsets_reset(
    topic: Annotated[list[str], typer.Option(help="Topic whose stored offsets to reset.")],
) -> None:
    """After the broker lost its log: keep the landed rows and continue from the new log's start.

    Records an empty snapshot whose offsets are the new log's first offsets, so the reset is visible
    in the table's history. Events that were in the old log and not yet landed are not recoverable.
    """
    from analytics_platform.contracts.envelope import event_type_for_topic
    from analytics_platform.kafka.reader import log_bounds
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.offsets import reset_offsets
    from analytics_platform.lakehouse.tables import ensure_raw_table

    settings = _settings()
    catalog = load_catalog(settings)
    for name in topic:
        bounds = log_bounds(settings, name)
        table = ensure_raw_table(catalog, settings, event_type_for_topic(name))
        starts = {p: b.start for p, b in bounds.items()}
        snapshot_id = reset_offsets(table, name, starts, reason="analytics-platform offsets reset")
        _echo(f"{name}: offsets reset to {starts} (snapshot {snapshot_id})")


@schemas_app.command("check")
def schemas_check() -> None:
    """Check every schema version against its predecessors (compatibility mode + storage rule); exit 1 if any breaks."""
    from analytics_platform.contracts.registry import load_registry

    settings = _settings()
    registry = load_registry(settings.schema_path)
    problems = registry.problems()
    for contract in registry:
        versions = ", ".join(f"v{v}" for v in sorted(contract.versions))
        broken = [p for p in problems if p.event_type == contract.event_type]
        _echo(f"{contract.event_type}: {versions} ({contract.compatibility.value}): {'FAILED' if broken else 'ok'}")
        for problem in broken:
            _echo(f"  {problem}")
    if problems:
        _fail(f"{len(problems)} incompatible change(s) in {registry.path}; fix them before publishing")


@schemas_app.command("list")
def schemas_list() -> None:
    """Every event type, its topic, schema versions, compatibility mode and payload fields."""
    from analytics_platform.contracts.registry import load_registry

    registry = load_registry(_settings().schema_path)
    for contract in registry:
        fields = ", ".join(f"{f.name}: {f.kind}{'' if f.required else '?'}" for f in contract.latest.payload)
        versions = ", ".join(f"v{v}" for v in sorted(contract.versions))
        _echo(f"{contract.event_type} ({contract.topic}; {versions}; {contract.compatibility.value}): {fields}")


@schemas_app.command("register")
def schemas_register() -> None:
    """Register every schema version with the Confluent Schema Registry at PLATFORM_SCHEMA_REGISTRY_URL."""
    from analytics_platform.contracts.confluent import ConfluentRegistry
    from analytics_platform.contracts.registry import load_registry

    settings = _settings()
    if not settings.schema_registry_url:
        _fail("PLATFORM_SCHEMA_REGISTRY_URL is not set; point it at a Confluent-compatible Schema Registry")
    confluent = ConfluentRegistry(str(settings.schema_registry_url))
    for contract in load_registry(settings.schema_path):
        confluent.set_compatibility(contract)
        for version in sorted(contract.versions):
            schema_id = confluent.schema_id(contract.version(version))
            _echo(f"{contract.topic}-value v{version}: schema id {schema_id} ({contract.compatibility.value})")


@dead_letters_app.command("list")
def dead_letters_list(
    topic: Annotated[str | None, typer.Option(help="Only this topic.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 20,
) -> None:
    """Dead letters not replayed yet: where they came from and why they were rejected."""
    from analytics_platform.ingest.replay import pending_dead_letters
    from analytics_platform.lakehouse.catalog import load_catalog

    settings = _settings()
    pending = pending_dead_letters(load_catalog(settings), settings, topic=topic)
    _echo(f"{pending.num_rows:,} dead letter(s) not replayed")
    for row in pending.slice(0, limit).to_pylist():
        _echo(
            f"  {row['kafka_topic']}:{row['kafka_partition']}:{row['kafka_offset']} "
            f"[{', '.join(row['failed_checks'])}] {row['reason']}"
        )


def _show_replay(replay: Replay, launched: bool) -> None:
    if launched:
        _echo(f"replay {replay.id}: run {replay.run_id} {replay.status} (attempt {replay.attempts})")
    else:
        _echo(f"replay {replay.id} was requested before: run {replay.run_id} {replay.status}; nothing launched")
    counts = dict(replay.counts)
    if replay.kind == "dead_letters" and "chosen" in counts:
        _echo(f"{counts['chosen']:,} dead letter(s) chosen")
        for topic, landed in sorted(counts["landed_per_topic"].items()):
            _echo(f"  {topic}: landed {landed:,}")
        for message, reason in counts["still_failing_reasons"].items():
            _echo(f"  still failing {message}: {reason}")
    else:
        for name, value in counts.items():
            _echo(f"  {name}: {value}")
    _echo(f"  run: {replay.run_url}")
    if replay.status != "SUCCESS" and replay.done:
        _fail(f"replay {replay.id} failed: {replay.error or 'see the run in the Dagster UI'}")


def _replay(request: OffsetsReplay | DeadLettersReplay | DaysReplay) -> None:
    from analytics_platform.local.orchestration import replay_here

    _show_replay(*replay_here(_settings(), request))


def _request(model: type[T], **fields: object) -> T:
    """The request model, or a clear error naming what to change (the API answers the same with a 422)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in error.errors())
        _fail(problems)
        raise


@replay_app.command("offsets")
def replay_offsets(
    topic: Annotated[str, typer.Option(help="The topic to re-read, e.g. events.purchase.")],
    partition: Annotated[
        list[str] | None, typer.Option(help="An offset range as PARTITION:FIRST-END (end exclusive), repeatable.")
    ] = None,
    start: Annotated[datetime | None, typer.Option("--from", help="Or messages from this UTC time ...")] = None,
    end: Annotated[datetime | None, typer.Option("--to", help="... to this UTC time (exclusive).")] = None,
) -> None:
    """Re-read a topic's offsets (or time range) from Kafka: land what never landed, recognise what did."""
    from datetime import UTC

    ranges: dict[int, list[int]] | None = None
    if partition:
        try:
            ranges = {int(p): [int(a), int(b)] for p, a, b in (_split_range(value) for value in partition)}
        except ValueError:
            _fail(f"--partition takes PARTITION:FIRST-END, e.g. 0:0-500; got {partition}")
    times = {
        "start_time": start.replace(tzinfo=start.tzinfo or UTC) if start else None,
        "end_time": end.replace(tzinfo=end.tzinfo or UTC) if end else None,
    }
    _replay(_request(OffsetsReplay, kind="offsets", topic=topic, partitions=ranges, **times))


def _split_range(value: str) -> tuple[str, str, str]:
    partition, _, offsets = value.partition(":")
    first, _, end = offsets.partition("-")
    return partition, first, end


@replay_app.command("days")
def replay_days(
    first: Annotated[
        datetime, typer.Option("--from", help="First UTC day to rebuild (YYYY-MM-DD).", formats=["%Y-%m-%d"])
    ],
    last: Annotated[datetime, typer.Option("--to", help="Last UTC day to rebuild, inclusive.", formats=["%Y-%m-%d"])],
    as_of: Annotated[
        datetime | None, typer.Option(help="Only raw rows ingested by this UTC time (a known good checkpoint).")
    ] = None,
    as_of_snapshot: Annotated[
        int | None, typer.Option(help="Only raw rows ingested by the commit of this raw Iceberg snapshot.")
    ] = None,
) -> None:
    """Rebuild the daily facts of these days from raw, as of now or of a known good checkpoint."""
    from datetime import UTC

    when = as_of.replace(tzinfo=as_of.tzinfo or UTC) if as_of else None
    fields = {"first": first.date(), "last": last.date(), "as_of": when, "as_of_snapshot": as_of_snapshot}
    _replay(_request(DaysReplay, kind="days", **fields))


@dead_letters_app.command("replay")
@replay_app.command("dead-letters")
def replay_dead_letters_command(
    topic: Annotated[str | None, typer.Option(help="Only dead letters of this topic.")] = None,
    check: Annotated[
        str | None,
        typer.Option(help="Only those that failed this check (e.g. known_version, payload.price:non_negative)."),
    ] = None,
    message: Annotated[
        list[str] | None, typer.Option(help="Only these messages, as topic:partition:offset (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would land; write nothing (no run).")] = False,
) -> None:
    """Replay dead letters through the normal decode-and-gate path after a fix; idempotent."""
    request = _request(DeadLettersReplay, kind="dead_letters", topic=topic, check=check, messages=message)
    if not dry_run:
        _replay(request)
        return
    from analytics_platform.ingest.replay import replay_dead_letters

    keys = [(t, int(p), int(o)) for t, p, o in (m.rsplit(":", 2) for m in request.messages or [])] or None
    result = replay_dead_letters(_settings(), topic=topic, check=check, keys=keys, dry_run=True)
    _echo(f"{result.chosen:,} dead letter(s) chosen")
    for name, count in sorted(result.landed.items()):
        _echo(f"  {name}: would land {count:,}")
    for (name, partition, offset), reason in sorted(result.still_failing.items()):
        _echo(f"  still failing {name}:{partition}:{offset}: {reason}")


@replay_app.command("status")
def replay_status(replay_id: Annotated[str, typer.Argument(help="The replay's id (rp-...).")]) -> None:
    """A replay's newest run: its status and counts."""
    from analytics_platform.local.instance import get_instance
    from analytics_platform.serving.replays import find_replay

    settings = _settings()
    replay = find_replay(settings, get_instance(settings), replay_id)
    if replay is None:
        _fail(f"no replay {replay_id}")
        return
    _echo(f"replay {replay.id} ({replay.kind}): run {replay.run_id} {replay.status}, {replay.attempts} attempt(s)")
    for name, value in replay.counts.items():
        _echo(f"  {name}: {value}")
    if replay.error:
        _echo(f"  error: {replay.error}")
    _echo(f"  run: {replay.run_url}")


@app.command()
def doctor() -> None:
    """Check every part the platform needs: broker, topics, schema registry, Iceberg catalog, Dagster storage,
    daemon, sensors, disk. One line each, ok or FAIL with the fix; exit code 1 if any failed."""
    from analytics_platform.operations.doctor import diagnose, render

    findings = diagnose(_settings())
    _echo(render(findings))
    if not all(finding.ok for finding in findings):
        raise typer.Exit(code=1)


@app.command()
def smoke(
    timeout: Annotated[float, typer.Option(help="Seconds the sample event has for all its hops, from its send.")] = 120,
    raw_only: Annotated[bool, typer.Option(help="Stop once it landed in raw Iceberg (no marts hop).")] = False,
) -> None:
    """Send one sample event (a visit by user `smoke`) through the running platform and time each hop: Kafka,
    raw Iceberg, a published marts build that counts it. Exit code 1 naming the hop that did not happen in time."""
    from analytics_platform.operations.smoke import Hop, run_smoke

    def show(hop: Hop) -> None:
        _echo(f"  {hop.name:<6} {hop.seconds:6.1f} s  {hop.detail}")

    _echo(f"smoke: one sample event, {timeout:.0f} s for every hop")
    run_smoke(_settings(), timeout_s=timeout, raw_only=raw_only, on_hop=show)
    _echo("smoke: ok")


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm deleting the platform home.")] = False,
) -> None:
    """Drop the raw tables and delete the platform home (warehouse, marts, Dagster history)."""
    from pyiceberg.exceptions import NoSuchTableError

    from analytics_platform.contracts.envelope import event_topics
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, REPLAYS_TABLE, table_identifier

    settings = _settings()
    if not yes:
        _fail(f"this drops the raw tables and deletes {settings.home}; run again with --yes to confirm")
    if embedded_broker.status(settings).running:
        embedded_broker.stop(settings)
    catalog = load_catalog(settings)
    for name in [*(topic.removeprefix("events.") for topic in event_topics()), DEAD_LETTER_TABLE, REPLAYS_TABLE]:
        with contextlib.suppress(NoSuchTableError):
            catalog.purge_table(table_identifier(settings, name))
    shutil.rmtree(settings.home, ignore_errors=True)
    _echo(f"deleted {settings.home}")


DRY_RUN_HELP = "Say what would be done; change nothing."


@maintain_app.command("compact")
def maintain_compact(dry_run: Annotated[bool, typer.Option(help=DRY_RUN_HELP)] = False) -> None:
    """Rewrite the small files of the raw days that ended into files of PLATFORM_COMPACT_TARGET_MB."""
    from analytics_platform.lakehouse.compaction import compact_raw_tables

    rewrites = compact_raw_tables(_settings(), dry_run=dry_run, progress=_echo)
    verb = "would rewrite" if dry_run else "rewrote"
    files = sum(rewrite.files_before for rewrite in rewrites)
    _echo(f"{verb} {files:,} files in {len(rewrites)} group(s) into {sum(r.files_after for r in rewrites):,}")


@maintain_app.command("expire")
def maintain_expire(dry_run: Annotated[bool, typer.Option(help=DRY_RUN_HELP)] = False) -> None:
    """Expire old snapshots; delete the files unreferenced for PLATFORM_ORPHAN_GRACE_HOURS."""
    from analytics_platform.lakehouse.expiry import expire_and_clean

    cleanups = expire_and_clean(_settings(), dry_run=dry_run, progress=_echo)
    verb = "would delete" if dry_run else "deleted"
    deleted = sum(len(cleanup.deleted) for cleanup in cleanups)
    waiting = sum(cleanup.waiting for cleanup in cleanups)
    _echo(f"{verb} {deleted:,} unreferenced files; {waiting:,} wait for the grace period")


@maintain_app.command("retain")
def maintain_retain(dry_run: Annotated[bool, typer.Option(help=DRY_RUN_HELP)] = False) -> None:
    """Move raw days past PLATFORM_RAW_HOT_DAYS to cold storage; delete days past the retention settings."""
    from analytics_platform.lakehouse.retention import apply_retention

    report = apply_retention(_settings(), dry_run=dry_run, progress=_echo)
    would = "would be " if dry_run else ""
    moved = len({(rewrite.table, rewrite.day) for rewrite in report.moved})
    _echo(f"{moved} day partition(s) {would}moved to cold, {len(report.dropped)} {would}deleted")


@roles_app.command("create")
def roles_create(
    url: Annotated[
        str,
        typer.Argument(
            help="The server, as a superuser, e.g. postgresql://postgres@db:5432/postgres; keep the password "
            "in PGPASSWORD or ~/.pgpass, not here."
        ),
    ],
    catalog_database: Annotated[
        str, typer.Option(help="Database of the Iceberg SQL catalog.")
    ] = roles.CATALOG_DATABASE,
    dagster_database: Annotated[
        str, typer.Option(help="Database of Dagster's storage; empty: none on this server.")
    ] = roles.DAGSTER_DATABASE,
    writer: Annotated[str, typer.Option(help="Name of the role the platform connects as.")] = roles.WRITER,
    reader: Annotated[str, typer.Option(help="Name of the read-only role for BI tools.")] = roles.READER,
    writer_password_env: Annotated[
        str, typer.Option(help="Environment variable holding the writer's password.")
    ] = roles.WRITER_PASSWORD_VARIABLE,
    reader_password_env: Annotated[
        str, typer.Option(help="Environment variable holding the reader's password.")
    ] = roles.READER_PASSWORD_VARIABLE,
    dry_run: Annotated[bool, typer.Option(help=DRY_RUN_HELP)] = False,
) -> None:
    """Create or update the writer and reader roles and their grants (the statements of
    docker/postgres-init.sql); idempotent. Prints each statement; passwords are sent hashed."""
    import psycopg2

    layout = roles.Layout(
        writer=roles.Role(writer, writer_password_env),
        reader=roles.Role(reader, reader_password_env),
        catalog_database=catalog_database,
        dagster_database=dagster_database or None,
    )
    try:
        roles.apply(url, layout, dry_run=dry_run, echo=_echo)
    except psycopg2.Error as error:
        _fail(redact(str(error).strip()))
    written = " and ".join(name for name in (catalog_database, dagster_database) if name)
    outcome = "dry run, nothing changed" if dry_run else "done"
    _echo(f"{outcome}: {writer} writes {written}, {reader} reads {catalog_database}")


def main() -> None:
    try:
        app()
    except PlatformError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
