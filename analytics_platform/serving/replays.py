"""Replays: re-run part of the pipeline from a checkpoint, as one Dagster run per request.

Three kinds, each a Dagster job:

- ``offsets``: re-read a topic's offset range (or the offsets a time range spans) from Kafka; what
  never landed lands, what did is recognised (:mod:`analytics_platform.ingest.reread`);
- ``dead_letters``: replay dead letters through decode and gate after a fix
  (:mod:`analytics_platform.ingest.replay`);
- ``days``: rebuild the daily facts of a day range from the raw tables as they are now, or as they were
  at a known good checkpoint (a time, or the commit time of an Iceberg snapshot).

A replay's id is a hash of its request, so the same request made twice, through the API or the CLI,
finds the run the first one launched instead of launching another: while it runs, and for
``replay_dedup_s`` after it succeeded. After that run failed, or later (new dead letters or late rows
may have arrived), the request launches it again as a new attempt under the same id. The runs carry
the id as a tag: Dagster's run storage is the ledger.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analytics_platform.contracts.envelope import event_topics, event_types
from analytics_platform.exceptions import DagsterUnavailableError, InvalidRequestError
from analytics_platform.settings import Settings

if TYPE_CHECKING:  # dagster is imported where used: the CLI's models load without it
    import dagster as dg

REPLAY_TAG = "analytics_platform/replay"
KIND_TAG = "analytics_platform/replay_kind"
ATTEMPT_TAG = "analytics_platform/replay_attempt"
REREAD_JOB = "replay_kafka_range"
DEAD_LETTERS_JOB = "replay_dead_letters"
REREAD_OP = "reread_kafka_range"
DEAD_LETTERS_OP = "replay_dead_letters_op"
DAILY_OP = "daily_marts"
CODE_LOCATION = "analytics_platform"  # workspace.yaml
ENDED_BADLY = ("FAILURE", "CANCELED")  # Dagster run statuses after which a request launches again


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OffsetsReplay(_Request):
    """Re-read a topic from Kafka: an offset range per partition, or a time range of message timestamps."""

    kind: Literal["offsets"]
    topic: str = Field(description="The topic, e.g. `events.purchase`.")
    partitions: dict[int, tuple[int, int]] | None = Field(
        default=None,
        description='Per partition, `[first offset, end offset)`, e.g. `{"0": [0, 500]}`.',
    )
    start_time: datetime | None = Field(default=None, description="With `end_time`: messages from this time on.")
    end_time: datetime | None = Field(default=None, description="Messages before this time.")

    @field_validator("topic")
    @classmethod
    def _known_topic(cls, topic: str) -> str:
        if topic not in event_topics():
            raise ValueError(f"unknown topic {topic!r}; the topics are {', '.join(sorted(event_topics()))}")
        return topic

    @field_validator("start_time", "end_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-11-01T10:00:00Z")
        return value

    @model_validator(mode="after")
    def _one_range(self) -> OffsetsReplay:
        times = (self.start_time, self.end_time)
        if (self.partitions is None) == (times == (None, None)) or times.count(None) == 1:
            raise ValueError("give either `partitions` (offset ranges) or both `start_time` and `end_time`")
        if self.start_time and self.end_time and self.start_time >= self.end_time:
            raise ValueError("`start_time` must be before `end_time`")
        for partition, (start, end) in (self.partitions or {}).items():
            if partition < 0 or start < 0 or start >= end:
                raise ValueError(f"partition {partition}: [{start}, {end}) is not an offset range (0 <= start < end)")
        return self


class DeadLettersReplay(_Request):
    """Replay dead letters not replayed yet, all or those of a topic, a failed check or given messages."""

    kind: Literal["dead_letters"]
    topic: str | None = Field(default=None, description="Only dead letters of this topic.")
    check: str | None = Field(default=None, description="Only those that failed this check, e.g. `known_version`.")
    messages: list[str] | None = Field(
        default=None, description="Only these messages, as `topic:partition:offset`.", max_length=10_000
    )

    @field_validator("messages")
    @classmethod
    def _coordinates(cls, messages: list[str] | None) -> list[str] | None:
        for message in messages or []:
            topic, _, rest = message.partition(":")
            partition, _, offset = rest.partition(":")
            if not (topic and partition.isdigit() and offset.isdigit()):
                raise ValueError(f"{message!r} is not topic:partition:offset (e.g. events.purchase:0:42)")
        return sorted(set(messages)) if messages is not None else None


class DaysReplay(_Request):
    """Rebuild the daily facts of a day range from raw: as of now, or as of a known good checkpoint."""

    kind: Literal["days"]
    first: date
    last: date
    as_of: datetime | None = Field(default=None, description="Only raw rows ingested by this time.")
    as_of_snapshot: int | None = Field(
        default=None, description="Only raw rows ingested by the commit of this raw Iceberg snapshot."
    )

    @model_validator(mode="after")
    def _range(self) -> DaysReplay:
        if self.first > self.last:
            raise ValueError("`first` must not be after `last`")
        if self.as_of is not None and self.as_of_snapshot is not None:
            raise ValueError("give `as_of` or `as_of_snapshot`, not both")
        if self.as_of is not None and self.as_of.tzinfo is None:
            raise ValueError("give `as_of` a time zone, e.g. 2026-11-01T10:00:00Z")
        return self


ReplayRequest = Annotated[OffsetsReplay | DeadLettersReplay | DaysReplay, Field(discriminator="kind")]


def replay_id(request: OffsetsReplay | DeadLettersReplay | DaysReplay) -> str:
    """The same request, however written (key order, time zone), has the same id."""
    canonical = request.model_dump(mode="json", exclude_none=True)
    for name in ("start_time", "end_time", "as_of"):
        if isinstance(value := getattr(request, name, None), datetime):
            canonical[name] = value.astimezone(UTC).isoformat()
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return f"rp-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class LaunchPlan:
    """The Dagster run that carries out a replay."""

    job_name: str
    run_config: dict[str, Any]
    tags: dict[str, str]


def _as_of(settings: Settings, request: DaysReplay) -> datetime | None:
    if request.as_of_snapshot is None:
        return request.as_of
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.lineage import ingested_until
    from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, properties
    from analytics_platform.lakehouse.tables import open_raw_table
    from analytics_platform.serving.events import lake_connection

    catalog = load_catalog(settings)
    for event_type in event_types().values():
        table = open_raw_table(catalog, settings, event_type)
        snapshot = table.snapshot_by_id(request.as_of_snapshot) if table is not None else None
        if snapshot is not None:
            ingested_at = properties(snapshot).get(INGESTED_AT_KEY)
            return (
                datetime.fromisoformat(ingested_at)
                if ingested_at
                else datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC)
            )
    with lake_connection(settings) as lake:
        recorded = ingested_until(lake, catalog, settings, request.as_of_snapshot)
    if recorded is not None:
        return recorded
    raise InvalidRequestError(
        f"no raw table has or had snapshot {request.as_of_snapshot} that landed rows (see the `snapshots` of an "
        "answer's `as_of`, or raw.ingest_snapshots); or give the checkpoint as `as_of`, a time"
    )


def _check_offsets(settings: Settings, topic: str, ranges: dict[int, tuple[int, int]]) -> None:
    """Refuse, before anything launches, offsets the log does not hold (say what it holds)."""
    from analytics_platform.ingest.reread import check_ranges
    from analytics_platform.kafka.reader import log_bounds

    check_ranges(topic, ranges, log_bounds(settings, topic))


def launch_plan(
    settings: Settings, request: OffsetsReplay | DeadLettersReplay | DaysReplay, attempt: int
) -> LaunchPlan:
    """The job, run config and tags of ``request``'s run (its ``attempt``-th)."""
    from analytics_platform.warehouse.refresh import DAILY_JOB, RANGE_END_TAG, RANGE_START_TAG, partition_range

    identifier = replay_id(request)
    tags = {REPLAY_TAG: identifier, KIND_TAG: request.kind, ATTEMPT_TAG: str(attempt)}
    config: dict[str, object]
    if isinstance(request, OffsetsReplay):
        config = {
            "topic": request.topic,
            "ranges": json.dumps({str(p): list(r) for p, r in sorted((request.partitions or {}).items())}),
            "start_time": request.start_time.isoformat() if request.start_time else "",
            "end_time": request.end_time.isoformat() if request.end_time else "",
            "replay_id": identifier,
        }
        return LaunchPlan(REREAD_JOB, {"ops": {REREAD_OP: {"config": config}}}, tags)
    if isinstance(request, DeadLettersReplay):
        config = {
            "topic": request.topic or "",
            "check": request.check or "",
            "messages": request.messages or [],
        }
        return LaunchPlan(DEAD_LETTERS_JOB, {"ops": {DEAD_LETTERS_OP: {"config": config}}}, tags)
    keys = partition_range((request.first, request.last), datetime.now(UTC).date())
    if keys is None:
        raise InvalidRequestError(
            f"no daily partitions between {request.first} and {request.last}: they run from PARTITIONS_START "
            "(analytics_platform/warehouse/refresh.py) to today"
        )
    as_of = _as_of(settings, request)
    config = {"raw_as_of": as_of.isoformat() if as_of else ""}
    return LaunchPlan(
        DAILY_JOB,
        {"ops": {DAILY_OP: {"config": config}}},
        tags | {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[1]},
    )


@dataclass(frozen=True)
class Replay:
    """A replay as its newest run stands."""

    id: str
    kind: str
    run_id: str
    status: str
    attempts: int
    counts: dict[str, Any]
    error: str | None
    run_url: str
    started_at: datetime | None
    ended_at: datetime | None

    @property
    def done(self) -> bool:
        return self.status in ("SUCCESS", "FAILURE", "CANCELED")


def _runs(instance: dg.DagsterInstance, identifier: str) -> list[dg.RunRecord]:
    import dagster as dg

    return list(instance.get_run_records(dg.RunsFilter(tags={REPLAY_TAG: identifier}), limit=100))


def _step_outputs(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    import dagster as dg

    counts: dict[str, Any] = {}
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is not None and event.step_output_data is not None:
            counts.update({key: entry.value for key, entry in event.step_output_data.metadata.items()})
    return counts


def _failure(instance: dg.DagsterInstance, run_id: str) -> str | None:
    import dagster as dg

    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    for record in reversed(records):
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data if event is not None else None
        if data is not None and data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description.strip()
        if data is not None and data.error is not None:
            return data.error.message.strip()
    return None


def find_replay(settings: Settings, instance: dg.DagsterInstance, identifier: str) -> Replay | None:
    """The replay with this id, as its newest run stands; None if no run has it."""
    records = _runs(instance, identifier)
    if not records:
        return None
    record = records[0]
    run = record.dagster_run
    counts = _step_outputs(instance, run.run_id)
    if run.tags.get(KIND_TAG) == "days":
        from analytics_platform.warehouse.refresh import RANGE_END_TAG, RANGE_START_TAG

        counts = {"first": run.tags.get(RANGE_START_TAG), "last": run.tags.get(RANGE_END_TAG)}
    return Replay(
        id=identifier,
        kind=run.tags.get(KIND_TAG, ""),
        run_id=run.run_id,
        status=run.status.value,
        attempts=len(records),
        counts=counts,
        error=_failure(instance, run.run_id) if run.status.value in ENDED_BADLY else None,
        run_url=f"{settings.dagster_ui_url.rstrip('/')}/runs/{run.run_id}",
        started_at=datetime.fromtimestamp(record.start_time, UTC) if record.start_time else None,
        ended_at=datetime.fromtimestamp(record.end_time, UTC) if record.end_time else None,
    )


def _launch_again(last: dg.RunRecord, dedup_s: float) -> bool:
    """Whether a request should launch a new run, given the newest run of the same request: not while it
    is queued or running; after it failed, yes; after it succeeded, once ``dedup_s`` have passed."""
    status = last.dagster_run.status.value
    if status in ENDED_BADLY:
        return True
    if status != "SUCCESS":
        return False
    ended = last.end_time or last.update_timestamp.timestamp()
    return time.time() - ended >= dedup_s


Launch = Callable[[LaunchPlan], str]
"""Starts the run of a plan; returns its run id."""


def request_replay(
    settings: Settings,
    instance: dg.DagsterInstance,
    request: OffsetsReplay | DeadLettersReplay | DaysReplay,
    launch: Launch,
) -> tuple[Replay, bool]:
    """The replay of ``request``: the one already launched (False), or a new run of it (True): see the
    module docstring. Requests with the same id are serialised by a lock file, so two at once launch one
    run."""
    identifier = replay_id(request)
    locks = settings.home / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"{identifier}.lock"):
        records = _runs(instance, identifier)
        launched = not records or _launch_again(records[0], settings.replay_dedup_s)
        if launched and isinstance(request, OffsetsReplay) and request.partitions is not None:
            _check_offsets(settings, request.topic, request.partitions)
        if launched:
            launch(launch_plan(settings, request, attempt=len(records) + 1))
    replay = find_replay(settings, instance, identifier)
    assert replay is not None, "the run was just created"
    return replay, launched


def webserver_launcher(settings: Settings) -> Launch:
    """Launch through the Dagster webserver's GraphQL API (PLATFORM_DAGSTER_WEBSERVER_URL), where the code
    location and the run launcher live: the API process needs no Dagster code of its own."""
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    webserver = settings.dagster_webserver_url or settings.dagster_ui_url
    url = urlsplit(webserver)

    def launch(plan: LaunchPlan) -> str:
        try:
            client = DagsterGraphQLClient(
                url.hostname or "127.0.0.1",
                port_number=url.port,
                use_https=url.scheme == "https",
                path_prefix=url.path.rstrip("/"),
                timeout=30,
            )
            return client.submit_job_execution(
                plan.job_name, repository_location_name=CODE_LOCATION, run_config=plan.run_config, tags=plan.tags
            )
        except (DagsterGraphQLClientError, OSError) as error:
            raise DagsterUnavailableError(
                f"the Dagster webserver at {webserver} did not launch the replay ({error}); start it "
                "(`make dev`) or point PLATFORM_DAGSTER_WEBSERVER_URL at it, then send the request again"
            ) from error

    return launch
