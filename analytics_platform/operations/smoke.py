"""``analytics-platform smoke``: one sample event through the running platform, timed hop by hop.

It produces a user visit with a fresh event and correlation id (source ``analytics-platform-smoke``,
user ``smoke``) through the platform's own producer, then watches, within one deadline counted from
the send:

1. **kafka**: the broker acknowledged it;
2. **raw**: ``raw.user_visit`` holds it (the ingest sensor's run landed it); a dead letter instead
   fails at once, with the reason;
3. **marts**: a published marts build counts it: the build's live facts (``fct_events_per_minute``) are
   pinned to a raw snapshot whose Kafka offsets cover the event, and count its minute (the live
   follower publishes such a build every few seconds; a full build does too).

Each hop prints the seconds since the send (as seen by polling every ``POLL_S``). A hop that does not
happen in time raises :class:`SmokeTestError` naming it and where to look. The event stays: it is a
real visit, by user ``smoke``, counted in the marts like any other.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import DeliveryError, SmokeTestError, TableNotFoundError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.offsets import NEXT_OFFSETS_KEY, TOPIC_KEY
from analytics_platform.lakehouse.snapshots import properties
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, open_raw_table, open_table
from analytics_platform.settings import Settings

POLL_S = 0.5
SOURCE = "analytics-platform-smoke"
USER = "smoke"
EVENT_TYPE = "user_visit"
SCHEMA_VERSION = 1
RAW_RUNBOOK = "docs/runbooks.md#raw-freshness"
MARTS_RUNBOOK = "docs/runbooks.md#mart-freshness"


@dataclass(frozen=True)
class Hop:
    name: str
    seconds: float  # since the event was sent
    detail: str


def sample_event(now: datetime) -> dict[str, object]:
    """A valid ``user_visit`` envelope stamped ``now``, with fresh ids."""
    token = uuid.uuid4().hex
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": EVENT_TYPE,
        "timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "source": SOURCE,
        "user_id": USER,
        "session_id": f"smoke-{token}",
        "correlation_id": f"smoke-{token}",
        "payload": {"page": "/smoke", "referrer": None, "product_id": None},
        "schema_version": SCHEMA_VERSION,
    }


@dataclass
class _Landed:
    partition: int
    offset: int


class _Watch:
    """The smoke test's clock and deadline."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - time.monotonic()


def run_smoke(
    settings: Settings, *, timeout_s: float, raw_only: bool = False, on_hop: Callable[[Hop], None] | None = None
) -> list[Hop]:
    """Send the sample event and wait for each hop; returns them (``on_hop`` gets each as it happens).

    Raises:
        SmokeTestError: a hop did not happen within ``timeout_s`` of the send (or the event was dead-lettered).
    """
    from analytics_platform.kafka.producer import EventProducer, producer_options

    now = datetime.now(UTC)
    event = sample_event(now)
    hops: list[Hop] = []

    def hop(name: str, detail: str) -> None:
        hops.append(Hop(name, watch.elapsed(), detail))
        if on_hop:
            on_hop(hops[-1])

    event_type = event_types()[EVENT_TYPE]
    producer = EventProducer(settings, **producer_options(settings))
    watch = _Watch(timeout_s)
    rejection = producer.send(event)
    if rejection is not None:
        raise SmokeTestError(
            f"the sample event failed edge validation ({rejection.error}): is the schema registry at "
            f"PLATFORM_SCHEMA_DIR / PLATFORM_SCHEMA_REGISTRY_URL the platform's?"
        )
    try:
        producer.flush(max(watch.left(), 0.1))
    except DeliveryError as error:
        raise SmokeTestError(
            f"kafka: the broker at {settings.bootstrap_servers} did not acknowledge the sample event within "
            f"{timeout_s:.0f} s ({error}); run `analytics-platform doctor`"
        ) from error
    hop("kafka", f"acknowledged by {settings.bootstrap_servers} ({event_type.topic}, event {event['event_id']})")

    landed = _wait_for_raw(settings, event, now, watch)
    hop("raw", f"raw.{EVENT_TYPE}, partition {landed.partition}, offset {landed.offset}")
    if raw_only:
        return hops
    build, count = _wait_for_marts(settings, now, landed, watch, hops[-1].seconds)
    hop(
        "marts",
        f"build {build.parent.name}: fct_events_per_minute counts {count} {EVENT_TYPE} event(s) at {now:%H:%M} UTC",
    )
    return hops


def _wait_for_raw(settings: Settings, event: dict[str, object], sent: datetime, watch: _Watch) -> _Landed:
    catalog = load_catalog(settings)
    event_type = event_types()[EVENT_TYPE]
    seen: dict[str, int | None] = {}
    since = sent - timedelta(seconds=1)
    while True:
        table = open_raw_table(catalog, settings, event_type)
        if (found := _changed(table, seen, "raw")) is not None and (
            landed := _find(found, str(event["event_id"]), since)
        ):
            return landed
        try:
            dead_letters = open_table(catalog, settings, DEAD_LETTER_TABLE)
        except TableNotFoundError:
            dead_letters = None
        if (changed := _changed(dead_letters, seen, "dead")) is not None and (
            reason := _dead_lettered(changed, event_type.topic, str(event["event_id"]), since)
        ):
            raise SmokeTestError(
                f"raw: the sample event was dead-lettered after {watch.elapsed():.1f} s instead of landing: {reason}. "
                "`analytics-platform dead-letters list` shows it; docs/runbooks.md#dead-letters-filling"
            )
        if watch.left() <= 0:
            raise SmokeTestError(
                f"raw: the sample event did not land in raw.{EVENT_TYPE} within {watch.timeout_s:.0f} s (it is in "
                f"{event_type.topic}): the sensor `ingest_{EVENT_TYPE}_sensor` launches the run that lands it. Run "
                f"`analytics-platform doctor`; see {RAW_RUNBOOK}"
            )
        time.sleep(min(POLL_S, max(watch.left(), 0)))


def _changed(table: Table | None, seen: dict[str, int | None], name: str) -> Table | None:
    """``table`` if its current snapshot is not the one seen last time under ``name`` (then remembered)."""
    snapshot = table.current_snapshot() if table is not None else None
    if table is None or snapshot is None or seen.get(name) == snapshot.snapshot_id:
        return None
    seen[name] = snapshot.snapshot_id
    return table


def _equal(column: str, value: str) -> EqualTo:
    return EqualTo(term=Reference(column), value=literal(value))


def _at_least(column: str, moment: datetime) -> GreaterThanOrEqual:
    return GreaterThanOrEqual(term=Reference(column), value=literal(moment.isoformat()))


def _find(table: Table, event_id: str, since: datetime) -> _Landed | None:
    """Where the event landed: its Kafka partition and offset (the event time prunes the scan to new files)."""
    rows = table.scan(
        row_filter=And(_equal("event_id", event_id), _at_least("event_at", since)),
        selected_fields=("kafka_partition", "kafka_offset"),
    ).to_arrow()
    if rows.num_rows == 0:
        return None
    return _Landed(int(rows.column("kafka_partition")[0].as_py()), int(rows.column("kafka_offset")[0].as_py()))


def _dead_lettered(table: Table, topic: str, event_id: str, since: datetime) -> str | None:
    """The reason the event went to raw.dead_letter, if it did (its bytes carry its id)."""
    rows = table.scan(
        row_filter=And(_equal("kafka_topic", topic), _at_least("ingested_at", since)),
        selected_fields=("raw_value", "reason"),
    ).to_arrow()
    for value, reason in zip(rows.column("raw_value").to_pylist(), rows.column("reason").to_pylist(), strict=True):
        if value is not None and event_id.encode() in value:
            return str(reason)
    return None


def _wait_for_marts(
    settings: Settings, sent: datetime, landed: _Landed, watch: _Watch, raw_seconds: float
) -> tuple[Path, int]:
    from analytics_platform.warehouse.builds import LIVE_PINS, read_pins
    from analytics_platform.warehouse.connections import current_build

    catalog = load_catalog(settings)
    event_type = event_types()[EVENT_TYPE]
    seen: Path | None = None
    while True:
        build = current_build(settings)
        if build is not None and build != seen:
            seen = build
            try:
                pin = (read_pins(build, LIVE_PINS) or {}).get(EVENT_TYPE)
                table = open_raw_table(catalog, settings, event_type)
                if pin and table is not None and _covers(table, pin, event_type.topic, landed):
                    count = _minute_count(build, sent)
                    if count:
                        return build, count
            except duckdb.Error:  # the build was replaced and removed while being read: look at the next
                pass
        if watch.left() <= 0:
            published = (
                f"the last published build is {seen.parent.name}"
                if seen
                else "no marts are published yet (`analytics-platform build` publishes them)"
            )
            raise SmokeTestError(
                f"marts: the sample event landed in raw.{EVENT_TYPE} after {raw_seconds:.1f} s, but no published marts "
                f"build counted it within {watch.timeout_s:.0f} s; {published}. The live follower "
                "(`live_facts_sensor`) publishes the per-minute facts every PLATFORM_MARTS_LIVE_INTERVAL_S, full "
                "builds (`marts_after_ingest_sensor`) every PLATFORM_MARTS_REFRESH_INTERVAL_S. Run "
                f"`analytics-platform doctor`; see {MARTS_RUNBOOK} (`--raw-only` stops after the raw hop)"
            )
        time.sleep(min(POLL_S, max(watch.left(), 0)))


def _covers(table: Table, snapshot_id: int, topic: str, landed: _Landed) -> bool:
    """Whether the rows of snapshot ``snapshot_id`` include the message at ``landed``: the Kafka offsets it (or the
    newest ingest snapshot before it) recorded are past it. An expired snapshot is older than the landing one."""
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None:
        return False
    for ancestor in ancestors_of(snapshot, table.metadata):
        summary = properties(ancestor)
        if summary.get(TOPIC_KEY) == topic and NEXT_OFFSETS_KEY in summary:
            next_offsets = {int(p): int(o) for p, o in json.loads(summary[NEXT_OFFSETS_KEY]).items()}
            return next_offsets.get(landed.partition, 0) > landed.offset
    return False


def _minute_count(build: Path, sent: datetime) -> int:
    """Events of the sample's type the build's per-minute facts count in the sample's minute."""
    with duckdb.connect(str(build), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        row = con.execute(
            "select coalesce(sum(event_count), 0) from marts.fct_events_per_minute "
            "where event_minute = date_trunc('minute', ?::timestamptz) and event_type = ?",
            [sent, EVENT_TYPE],
        ).fetchone()
    return int(row[0]) if row else 0
