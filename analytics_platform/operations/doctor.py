"""``analytics-platform doctor``: is every part the platform needs there and healthy? One line per part.

Broker, topics (partitions and replication as the broker reports them, against the settings), schema
registry, Iceberg catalog, Dagster storage, the daemon's heartbeats, the sensors' ticks, and the disk of the
platform home: each is ``ok`` or ``FAIL`` with the fix. The checks run at once, each in a thread with a
deadline, so a dead or unroutable part fails within seconds instead of hanging the command (a client
library's own retry loop included); a part that depends on another one that failed is reported as not
checked, failed.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analytics_platform.exceptions import ConfigError
from analytics_platform.kafka.client_config import client_config
from analytics_platform.security.redaction import redact
from analytics_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg
    from confluent_kafka.admin import ClusterMetadata

CONNECT_TIMEOUT_S = 2.0  # a TCP connect to the broker: refused at once, unroutable within this
KAFKA_TIMEOUT_S = 4.0  # the broker's metadata answer
HTTP_TIMEOUT_S = 4.0
GROUP_DEADLINE_S = 10.0  # a group of checks that has not answered by then fails as "no answer"
HEARTBEAT_MAX_AGE_S = 120.0  # Dagster's daemons beat every 30 s
TICK_MAX_AGE_S = 300.0  # the slowest sensors tick every 60 s
MIN_FREE_BYTES = 1 << 30
MIN_FREE_SHARE = 0.05
DAEMON_FIX = (
    "start it: `make dev` runs it (with `dagster dev`); elsewhere run `dagster-daemon run -w workspace.yaml` "
    "with DAGSTER_HOME=<home>/dagster (compose: the dagster-daemon service); its log says why it stopped"
)


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _first_line(error: BaseException | str) -> str:
    """The first line of an error's message, passwords masked (a driver's message may quote the URL)."""
    text = str(error).strip()
    return redact(text.splitlines()[0]) if text else type(error).__name__


# --- Kafka ------------------------------------------------------------------------------------------


def _reachable(bootstrap_servers: str) -> str | None:
    """None if some bootstrap server accepts a TCP connection, else why none did."""
    problems = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
            return None
        except (OSError, ValueError) as error:
            problems.append(f"{server.strip()}: {error}")
    return "; ".join(problems)


def check_kafka(settings: Settings) -> list[Finding]:
    """The broker answers, and every event topic exists with PLATFORM_TOPIC_PARTITIONS partitions, a leader
    each and at least PLATFORM_TOPIC_REPLICATION_FACTOR replicas, all in sync (where the broker reports replicas)."""
    servers = settings.bootstrap_servers
    try:
        config = client_config(settings)
    except ConfigError as error:
        fix = "correct the PLATFORM_KAFKA_* settings (docs/security.md#kafka-tls-and-sasl)"
        return [
            Finding("broker", False, f"not checked: {error}", fix),
            Finding("topics", False, "not checked: the Kafka client settings are inconsistent", fix),
        ]
    broker_fix = (
        "start the embedded broker with `analytics-platform broker start` (or `make dev`); for a Kafka "
        "cluster, check PLATFORM_KAFKA_BOOTSTRAP_SERVERS, that the brokers are up, and the TLS and SASL "
        "settings (docs/security.md#kafka-tls-and-sasl)"
    )
    started = time.monotonic()
    if problem := _reachable(servers):
        return [
            Finding("broker", False, f"nothing accepts connections at {servers} ({problem})", broker_fix),
            Finding("topics", False, "not checked: the broker is unreachable", broker_fix),
        ]
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**config, "socket.connection.setup.timeout.ms": 3000})
    try:
        metadata = admin.list_topics(timeout=KAFKA_TIMEOUT_S)
    except KafkaException as error:
        return [
            Finding("broker", False, f"{servers} accepts connections but sent no metadata: {error}", broker_fix),
            Finding("topics", False, "not checked: the broker sent no metadata", broker_fix),
        ]
    seconds = time.monotonic() - started
    brokers = len(metadata.brokers)
    return [
        Finding("broker", True, f"{servers}: {brokers} broker(s) answered in {seconds:.2f} s"),
        _check_topics(settings, metadata),
    ]


def _check_topics(settings: Settings, metadata: ClusterMetadata) -> Finding:
    from analytics_platform.contracts.envelope import event_topics

    wanted = settings.topic_partitions
    factor = settings.topic_replication_factor
    missing, wrong, leaderless, under_replicated, too_few_replicas = [], [], [], [], []
    factors = set()
    for topic in event_topics():
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            missing.append(topic)
            continue
        if len(found.partitions) != wanted:
            wrong.append(f"{topic} has {len(found.partitions)}")
        for partition in found.partitions.values():
            if partition.leader < 0:
                leaderless.append(f"{topic}[{partition.id}]")
            if partition.replicas:
                factors.add(len(partition.replicas))
                if len(partition.replicas) < factor:
                    too_few_replicas.append(f"{topic}[{partition.id}] has {len(partition.replicas)}")
                if len(partition.isrs) < len(partition.replicas):
                    under_replicated.append(f"{topic}[{partition.id}]")
    problems, fixes = [], []
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
        fixes.append("create them with `analytics-platform topics create` (make dev does on start)")
    if wrong:
        problems.append(f"not {wanted} partitions (PLATFORM_TOPIC_PARTITIONS): {', '.join(wrong)}")
        fixes.append(
            "add partitions with Kafka's `kafka-topics.sh --alter --partitions N`, or set "
            "PLATFORM_TOPIC_PARTITIONS to what the topics have"
        )
    if leaderless:
        problems.append(f"no leader: {', '.join(leaderless)}")
        fixes.append("a broker holding them is down: bring it back (its partitions are unavailable meanwhile)")
    if under_replicated:
        problems.append(f"under-replicated: {', '.join(under_replicated)}")
        fixes.append("a replica is down or lagging: check the brokers' health")
    if too_few_replicas:
        short = ", ".join(too_few_replicas)
        problems.append(f"fewer than {factor} replicas (PLATFORM_TOPIC_REPLICATION_FACTOR): {short}")
        fixes.append(
            "the topics were created with fewer: add replicas with Kafka's `kafka-reassign-partitions.sh`, or set "
            "PLATFORM_TOPIC_REPLICATION_FACTOR to what they have"
        )
    if problems:
        return Finding("topics", False, "; ".join(problems), "; ".join(fixes))
    replication = (
        f"replication factor {'/'.join(map(str, sorted(factors)))}, all in sync"
        if factors
        else "replication not reported by this broker"
    )
    return Finding("topics", True, f"{len(event_topics())} event topics, {wanted} partitions each, {replication}")


# --- schema registry, catalog ------------------------------------------------------------------------


def check_schema_registry(settings: Settings) -> list[Finding]:
    url = settings.schema_registry_url
    if not url:
        return [Finding("schema registry", True, "not configured (PLATFORM_SCHEMA_REGISTRY_URL): the in-repo registry")]
    fix = "start the Schema Registry, or correct PLATFORM_SCHEMA_REGISTRY_URL"
    where = redact(url)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=HTTP_TIMEOUT_S) as answer:
            subjects = len(json.loads(answer.read()))
    except (OSError, ValueError) as error:
        return [Finding("schema registry", False, f"{where}: {_first_line(error)}", fix)]
    return [Finding("schema registry", True, f"{where}: {subjects} subject(s)")]


def check_catalog(settings: Settings) -> list[Finding]:
    from pyiceberg.exceptions import NoSuchNamespaceError

    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog

    where = redact(settings.catalog_sql_uri)
    try:
        catalog = load_catalog(settings)
        try:
            tables = {name for _, name in catalog.list_tables(settings.raw_namespace)}
        except NoSuchNamespaceError:
            tables = set()
    except Exception as error:
        return [
            Finding(
                "catalog",
                False,
                f"{where}: {_first_line(error)}",
                "check that the database is up and PLATFORM_CATALOG_URI (or PLATFORM_HOME) is right",
            )
        ]
    missing = sorted(set(event_types()) - tables)
    later = f"; not created yet: {', '.join(missing)} (the first ingest creates them)" if missing else ""
    return [Finding("catalog", True, f"{where}: {len(tables)} table(s) in {settings.raw_namespace}{later}")]


# --- Dagster ----------------------------------------------------------------------------------------


def expected_sensors() -> list[str]:
    """The sensors of the code location that run by default (tests compare this with the definitions)."""
    from analytics_platform.contracts.envelope import event_types

    return sorted(
        [
            *(f"ingest_{name}_sensor" for name in event_types()),
            "marts_after_ingest_sensor",
            "live_facts_sensor",
            "compact_when_small_files",
            "freshness_checks_sensor",
            "freshness_alert_sensor",
            "run_failure_alert_sensor",
        ]
    )


def check_dagster(settings: Settings) -> list[Finding]:
    from analytics_platform.local.instance import get_instance

    where = redact(settings.dagster_storage_url) if settings.dagster_storage_url else str(settings.dagster_home_path)
    try:
        instance = get_instance(settings)
        instance.get_run_records(limit=1)
    except Exception as error:
        fix = "check that the database is up and PLATFORM_DAGSTER_STORAGE_URL (or PLATFORM_HOME) is right"
        return [
            Finding("dagster storage", False, f"{where}: {_first_line(error)}", fix),
            Finding("daemon", False, "not checked: Dagster's storage is unreachable", fix),
            Finding("sensors", False, "not checked: Dagster's storage is unreachable", fix),
        ]
    return [Finding("dagster storage", True, f"{where} answers"), _check_daemon(instance), _check_sensors(instance)]


def _check_daemon(instance: dg.DagsterInstance) -> Finding:
    now = time.time()
    beats = instance.get_daemon_heartbeats()
    required = list(instance.get_required_daemon_types())
    silent = [kind for kind in required if kind not in beats]
    stale = {kind: now - beats[kind].timestamp for kind in required if kind in beats}
    old = sorted(kind for kind, age in stale.items() if age > HEARTBEAT_MAX_AGE_S)
    if silent and len(silent) == len(required):
        return Finding("daemon", False, "no Dagster daemon has ever beaten on this instance", DAEMON_FIX)
    if silent or old:
        ages = ", ".join(f"{kind} {stale[kind]:.0f} s ago" for kind in old)
        never = f"never: {', '.join(silent)}" if silent else ""
        detail = "; ".join(part for part in (f"last heartbeats {ages}" if ages else "", never) if part)
        return Finding("daemon", False, f"stale ({detail}; limit {HEARTBEAT_MAX_AGE_S:.0f} s)", DAEMON_FIX)
    errors = {kind: beats[kind].errors for kind in required if beats[kind].errors}
    if errors:
        kind, kind_errors = sorted(errors.items())[0]
        first = kind_errors[0] if kind_errors else None
        message = _first_line(first.message) if first is not None else "error"
        return Finding(
            "daemon",
            False,
            f"{', '.join(sorted(errors))} reported errors, e.g. {kind}: {message}",
            "read the daemon's log (<home>/logs/dagster-dev.log under make dev)",
        )
    newest = min(stale.values())
    return Finding("daemon", True, f"{len(required)} daemons beating, the last {newest:.0f} s ago")


def _check_sensors(instance: dg.DagsterInstance) -> Finding:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorTick, TickStatus

    now = time.time()
    # A sensor has a state per code location origin it ran under: keep the one that ticked last.
    latest: dict[str, tuple[InstigatorStatus, InstigatorTick | None]] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
        tick = ticks[0] if ticks else None
        known = latest.get(state.instigator_name)
        if known is None or known[1] is None or (tick is not None and tick.timestamp > known[1].timestamp):
            latest[state.instigator_name] = (state.status, tick)
    if not any(tick for _, tick in latest.values()):
        return Finding(
            "sensors", False, "no sensor has ever ticked on this instance (the daemon ticks them)", DAEMON_FIX
        )
    problems = []
    for name in expected_sensors():
        status, tick = latest.get(name, (None, None))
        if status == InstigatorStatus.STOPPED:
            problems.append(f"{name} is stopped")
        elif tick is None:
            problems.append(f"{name} never ticked")
        elif tick.status == TickStatus.FAILURE:
            problems.append(f"{name}'s last tick failed: {_first_line(tick.error.message if tick.error else 'error')}")
        elif now - tick.timestamp > TICK_MAX_AGE_S:
            problems.append(f"{name} last ticked {now - tick.timestamp:.0f} s ago")
    if problems:
        return Finding(
            "sensors",
            False,
            "; ".join(problems),
            "a stopped sensor: start it in the Dagster UI (Automation) or with `dagster sensor start NAME`; one "
            "that never ticks: is the daemon running (line above)? a failing one: its tick's error in the UI",
        )
    count, window = len(expected_sensors()), TICK_MAX_AGE_S / 60
    return Finding("sensors", True, f"{count} sensors running, each ticked in the last {window:.0f} min")


# --- disk -------------------------------------------------------------------------------------------


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(settings: Settings) -> list[Finding]:
    """Free space on each volume the platform writes to (home, marts builds, a local warehouse, Dagster)."""
    paths = [settings.home, settings.duckdb_path, settings.dagster_home_path]
    if settings.warehouse_uri.startswith("file://"):
        paths.append(Path(settings.warehouse_uri.removeprefix("file://")))
    volumes: dict[int, Path] = {}
    for path in paths:
        existing = _existing(path.expanduser().resolve())
        volumes.setdefault(existing.stat().st_dev, existing)
    findings = []
    for path in volumes.values():
        usage = shutil.disk_usage(path)
        share = usage.free / usage.total if usage.total else 0.0
        detail = f"{path}: {usage.free / 1e9:,.1f} GB free of {usage.total / 1e9:,.0f} GB ({share:.0%})"
        if usage.free < MIN_FREE_BYTES or share < MIN_FREE_SHARE:
            findings.append(
                Finding(
                    "disk",
                    False,
                    f"{detail}, under {MIN_FREE_BYTES / 1e9:.0f} GB or {MIN_FREE_SHARE:.0%}",
                    "free space (docs/runbooks.md#disk-filling says what grows), or move PLATFORM_HOME, "
                    "PLATFORM_DUCKDB_DIR or PLATFORM_WAREHOUSE to a larger volume",
                )
            )
        else:
            findings.append(Finding("disk", True, detail))
    return findings


# --- running them -----------------------------------------------------------------------------------

CHECKS: list[tuple[tuple[str, ...], Callable[[Settings], list[Finding]]]] = [
    (("broker", "topics"), check_kafka),
    (("schema registry",), check_schema_registry),
    (("catalog",), check_catalog),
    (("dagster storage", "daemon", "sensors"), check_dagster),
    (("disk",), check_disk),
]


def diagnose(settings: Settings, deadline_s: float = GROUP_DEADLINE_S) -> list[Finding]:
    """Every check, run at once (a daemon thread each: one that hangs is abandoned, not waited for);
    in the order of :data:`CHECKS`."""
    results: dict[int, list[Finding]] = {}

    def run(index: int, check: Callable[[Settings], list[Finding]], names: tuple[str, ...]) -> None:
        try:
            results[index] = check(settings)
        except Exception as error:  # a check that breaks is a failed check, with what broke
            results[index] = [Finding(name, False, f"the check failed: {_first_line(error)}") for name in names]

    threads = []
    for index, (names, check) in enumerate(CHECKS):
        thread = threading.Thread(target=run, args=(index, check, names), name=f"doctor-{names[0]}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + deadline_s
    findings = []
    for index, ((names, _), thread) in enumerate(zip(CHECKS, threads, strict=True)):
        thread.join(max(deadline - time.monotonic(), 0))
        findings += results.get(index) or [
            Finding(name, False, f"no answer within {deadline_s:.0f} s", "the part hangs: check it is up and reachable")
            for name in names
        ]
    return findings


def render(findings: list[Finding]) -> str:
    width = max(len(finding.name) for finding in findings)
    lines = []
    for finding in findings:
        lines.append(f"{'ok' if finding.ok else 'FAIL':<5} {finding.name:<{width}}  {finding.detail}")
        if not finding.ok and finding.fix:
            lines.append(f"{'':<5} {'':<{width}}  fix: {finding.fix}")
    return "\n".join(lines)
