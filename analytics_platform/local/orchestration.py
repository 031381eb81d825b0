"""Running the platform's Dagster jobs from the CLI and the demo, on the shared instance.

Going through the jobs (not calling the libraries directly) means a CLI ingest or build is the same
code as a sensor-launched run and shows up in the Dagster UI's history like one.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg

from analytics_platform.exceptions import ConfigError, PlatformError, QualityGateError
from analytics_platform.ingest.plan import plan_next_run
from analytics_platform.local.instance import get_instance
from analytics_platform.settings import Settings

if TYPE_CHECKING:
    from analytics_platform.serving.replays import DaysReplay, DeadLettersReplay, OffsetsReplay, Replay

    ReplayRequestModel = OffsetsReplay | DeadLettersReplay | DaysReplay


def ingest_through_dagster(settings: Settings, topic: str) -> Iterator[tuple[int, int]]:
    """Plan and run the topic's ingest job until caught up; yields (rows landed, dead letters) per run."""
    from analytics_platform.contracts.envelope import event_type_for_topic
    from analytics_platform.definitions import ingestion_only
    from analytics_platform.defs.ingestion.assets import raw_asset_key
    from analytics_platform.defs.ingestion.jobs import ingest_job_name, ingest_run_config

    event_type = event_type_for_topic(topic)
    job = ingestion_only().resolve_job_def(ingest_job_name(event_type))  # no dbt: ingestion does not need it
    op_name = raw_asset_key(event_type).to_python_identifier()
    instance = get_instance(settings)
    while (plan := _retrying(f"planning {topic}", lambda: plan_next_run(settings, topic))) is not None:
        result = job.execute_in_process(
            run_config=ingest_run_config(event_type, plan), instance=instance, raise_on_error=False
        )
        if not result.success:
            raise PlatformError(f"ingesting {topic} failed (run {result.run_id}): {failure_message(result)}")
        materialization = next(  # the node also reports raw/dead_letter when it wrote dead letters
            m for m in result.asset_materializations_for_node(op_name) if m.asset_key == raw_asset_key(event_type)
        )
        metadata = materialization.metadata
        yield int(metadata["rows_landed"].value), int(metadata["dead_lettered"].value)  # type: ignore[arg-type]


T = TypeVar("T")


def _retrying(what: str, call: Callable[[], T], attempts: int = 5) -> T:
    """``call()``, retried like the ops' transient errors (2, 4, 8, 16 s, +-50%) unless it fails terminally:
    the CLI plans outside any Dagster op, so a database or broker restart would otherwise end the command."""
    from analytics_platform.defs.retries import as_terminal

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if as_terminal(error) is not None or attempt == attempts:
                raise
            delay = 2**attempt * random.uniform(0.5, 1.5)
            print(f"{what} failed ({type(error).__name__}: {error}); retrying in {delay:.0f}s", file=sys.stderr)
            time.sleep(delay)
    raise AssertionError("unreachable")


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """What the failed steps of an in-process run said (a terminal error's message says how to go on).

    A ``dg.Failure`` (every terminal error is raised as one) is shown by its description alone: its
    class path and the stack are in the run's log."""
    messages = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        failure = event.step_failure_data
        if failure.user_failure_data is not None and failure.user_failure_data.description:
            messages.append(failure.user_failure_data.description.strip())
        elif failure.error is not None:
            messages.append(failure.error.message.strip())
    return "\n".join(messages) or "see the run's log in the Dagster UI"


def _console_log_level(level: str) -> dict[str, object]:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def build_marts(settings: Settings, log_path: Path | None = None) -> float:
    """Build every model, and the daily facts of every day with data, in one run (the job the marts
    sensor launches, ``refresh_marts``); returns seconds taken.

    With ``log_path``, dbt's and Dagster's output go to that file instead of the terminal.
    """
    from analytics_platform.warehouse.refresh import marts_run, touched_days

    started = time.monotonic()
    job_name, tags = marts_run(touched_days(settings, {}), datetime.now(UTC).date())
    _run_build(settings, job_name, log_path, tags)
    return time.monotonic() - started


def refresh_marts(settings: Settings, days: tuple[date, date] | None, log_path: Path | None = None) -> float:
    """Rebuild every model, and the daily facts of ``days`` (first, last event day), in one run (the marts
    sensor's job); returns seconds taken. Erasure runs it over the days the erased user had events on."""
    from analytics_platform.warehouse.refresh import marts_run

    started = time.monotonic()
    job_name, tags = marts_run(days, datetime.now(UTC).date())
    _run_build(settings, job_name, log_path, tags)
    return time.monotonic() - started


def backfill_daily(settings: Settings, first: date, last: date, log_path: Path | None = None) -> float:
    """Delete and rebuild the daily facts of ``first`` .. ``last`` in one ranged run, after the raw
    quality checks; returns seconds taken."""
    from analytics_platform.warehouse.refresh import DAILY_JOB, RANGE_END_TAG, RANGE_START_TAG, partition_range

    started = time.monotonic()
    keys = partition_range((first, last), datetime.now(UTC).date())
    if keys is None:
        raise ConfigError(
            f"no daily partitions between {first} and {last}: partitions run from PARTITIONS_START "
            "(analytics_platform/warehouse/refresh.py) to today"
        )
    _run_build(settings, DAILY_JOB, log_path, {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[1]})
    return time.monotonic() - started


@contextlib.contextmanager
def _output_to(log_path: Path | None) -> Iterator[dict[str, object]]:
    """Run config for a job; with ``log_path``, its output (dbt's, and Dagster's run log with any stack
    trace) goes to that file instead of the terminal, which then gets only the outcome."""
    with contextlib.ExitStack() as stack:
        if log_path is None:
            yield {}
            return
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = stack.enter_context(log_path.open("a"))
        stack.enter_context(contextlib.redirect_stdout(log))
        stack.enter_context(contextlib.redirect_stderr(log))
        yield {}


def _run_build(settings: Settings, job_name: str, log_path: Path | None, tags: dict[str, str]) -> None:
    from analytics_platform.definitions import platform_definitions

    with _output_to(log_path) as run_config:
        result = (
            platform_definitions()
            .resolve_job_def(job_name)
            .execute_in_process(run_config=run_config, instance=get_instance(settings), tags=tags, raise_on_error=False)
        )
    if not result.success:
        failed = [
            f"{evaluation.asset_key.to_user_string()} {evaluation.check_name}: {evaluation.description}"
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed and evaluation.asset_key.path[0] == "raw"
        ]
        if failed:
            raise QualityGateError(
                "the marts were not rebuilt because raw quality checks failed (the published marts are unchanged):\n  "
                + "\n  ".join(failed)
                + "\nInspect them with `analytics-platform dead-letters list`; replay after a fix with "
                "`analytics-platform dead-letters replay`."
            )
        where = f"the full output is in {log_path}" if log_path else "the dbt output is above"
        raise PlatformError(
            f"the marts build failed; the previously published marts are unchanged ({where}, or see run "
            f"{result.run_id} in the Dagster UI):\n{failure_message(result)}"
        )


def _without_follow(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """An in-process run must return to its caller once its range landed: it does not follow the topic."""
    ops = {name: {**op, "config": {**op["config"], "follow_s": 0.0}} for name, op in run_config["ops"].items()}
    return {**run_config, "ops": ops}


@dataclass(frozen=True)
class SensorRun:
    sensor: str
    run_key: str
    success: bool


def tick_ingest_sensors(
    settings: Settings, instance: dg.DagsterInstance, *, log_level: str = "INFO"
) -> list[SensorRun]:
    """Evaluate every ingest sensor once and execute the runs it requests, as the daemon would.

    Runs execute in this process (no ~10 s process launch each) and are recorded on ``instance`` with
    the sensor's run key, so a request already executed is skipped exactly as the daemon skips it.
    Used by the demo and the end-to-end tests; ``make dev`` leaves this to the real daemon.
    """
    from analytics_platform.definitions import ingestion_only
    from analytics_platform.defs.resources import PlatformResource

    definitions = ingestion_only()
    runs = []
    for sensor in definitions.sensors or []:
        assert isinstance(sensor, dg.SensorDefinition)
        with dg.build_sensor_context(
            instance=instance, sensor_name=sensor.name, resources={"platform": PlatformResource()}
        ) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult), "ingest sensors return a SensorResult"
        for request in result.run_requests or []:
            tags = {
                **request.tags,
                "dagster/run_key": request.run_key or "",
                "dagster/sensor_name": sensor.name,
            }
            if request.run_key and instance.get_run_records(
                dg.RunsFilter(tags={"dagster/sensor_name": sensor.name, "dagster/run_key": request.run_key}),
                limit=1,
            ):
                continue
            assert sensor.job_name is not None, "each ingest sensor targets its topic's job"
            job = definitions.resolve_job_def(sensor.job_name)
            run_config = {**_without_follow(request.run_config), **_console_log_level(log_level)}
            outcome = job.execute_in_process(run_config=run_config, instance=instance, tags=tags, raise_on_error=False)
            runs.append(SensorRun(sensor.name, request.run_key or "", outcome.success))
    return runs


def replay_here(settings: Settings, request: ReplayRequestModel) -> tuple[Replay, bool]:
    """Run ``request``'s replay in this process on the shared instance, unless the same request already
    launched a run that did not fail (see :func:`analytics_platform.serving.replays.request_replay`); the
    run shows in the Dagster UI like one the API launched, under the same replay id."""
    from analytics_platform.definitions import platform_definitions
    from analytics_platform.serving.replays import LaunchPlan, request_replay

    instance = get_instance(settings)

    def launch(plan: LaunchPlan) -> str:
        job = platform_definitions().resolve_job_def(plan.job_name)
        result = job.execute_in_process(
            run_config=plan.run_config, instance=instance, tags=plan.tags, raise_on_error=False
        )
        return result.run_id

    return request_replay(settings, instance, request, launch)
