"""The anomaly checks: each fires (a warning, never blocking) on the incident the generator injects, and
stays quiet on the clean rest of the stream.

One 6-day stream carries every incident at a time of its own, so one landing and one build serve all the
checks: the hourly ones at their own hours of the last day, the 15-minute spikes at theirs, the funnel dip
on the day before. The unknown fields come last and land after the build (the blocking raw check would
hold it back), in a third ingest, so that check has earlier batches to compare with. Every observed and
baseline value is recomputed here from the generated events.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka import broker as embedded_broker
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.producer import producer_options, publish
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import build_marts
from analytics_platform.quality import anomalies
from analytics_platform.settings import Settings, get_settings
from analytics_platform.sim.generator import ACTIVITY_TYPES, DEFAULT_START, DRIFT_FIELD, Anomaly, generate_events
from tests.conftest import set_environment
from tests.helpers import free_port
from tests.landed import environment

pytestmark = pytest.mark.integration

EVENTS, DAYS, SEED = 48_000, 6, 16
HOUR, QUARTER, DAY = timedelta(hours=1), timedelta(minutes=15), timedelta(days=1)
LAST_DAY = DEFAULT_START + (DAYS - 1) * DAY  # 2026-11-06
DRIFT_FROM = LAST_DAY + 20 * HOUR  # lands after the build
INCIDENTS = {
    anomaly.kind: anomaly
    for anomaly in (
        Anomaly("volume-drop", LAST_DAY + 3 * HOUR),
        Anomaly("volume-spike", LAST_DAY + 6 * HOUR),
        Anomaly("null-drift", LAST_DAY + 9 * HOUR),
        Anomaly("error-spike", LAST_DAY + 12 * HOUR, QUARTER),
        Anomaly("dead-letter-spike", LAST_DAY + 15 * HOUR, QUARTER),
        Anomaly("funnel-dip", LAST_DAY - DAY, DAY),
        Anomaly("unknown-fields", DRIFT_FROM, 4 * HOUR),
    )
}
# Hours of the last day no incident touches the volume of (sessions last minutes: not the hour after one).
QUIET_HOURS = (0, 1, 2, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


@dataclass(frozen=True)
class Landed:
    events: list[dict[str, Any]]  # as generated: the dead-letter spike's copies included
    settings: Settings
    variables: dict[str, str]
    ingested: tuple[datetime, datetime, datetime]  # after the history, after the last day, after the drift

    @property
    def unique(self) -> list[dict[str, Any]]:
        """Each event once (the copies are dead letters), with its time parsed."""
        first: dict[str, dict[str, Any]] = {}
        for event in self.events:
            first.setdefault(event["event_id"], {**event, "at": parse(event["timestamp"])})
        return list(first.values())

    @contextlib.contextmanager
    def build(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with contextlib.closing(anomalies.connect(self.settings)) as con:
            yield con


def parse(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def produce_and_land(settings: Settings, events: list[dict[str, Any]]) -> datetime:
    assert publish(events, settings, **producer_options(settings)) == len(events)
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landed]:
    home = tmp_path_factory.mktemp("anomalies") / "platform"
    variables = {
        "PLATFORM_HOME": str(home),
        "PLATFORM_BROKER_PORT": str(free_port()),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    with environment(variables):
        settings = get_settings()
        embedded_broker.start(settings)
        try:
            create_topics(settings, settings.topic_partitions)
            # No reference data: the snapshots' rounds would only add to the build's time.
            events = generate_events(EVENTS, seed=SEED, days=DAYS, anomalies=list(INCIDENTS.values()))
            last_day, drift = LAST_DAY.strftime("%Y-%m-%d"), DRIFT_FROM.strftime("%Y-%m-%dT%H")
            history = produce_and_land(settings, [e for e in events if e["timestamp"] < last_day])
            today = produce_and_land(settings, [e for e in events if last_day <= e["timestamp"] < drift])
            build_marts(settings)  # the marts jobs run the anomaly checks of the marts right after the build
            drifted = produce_and_land(settings, [e for e in events if e["timestamp"] >= drift])
            yield Landed(events, settings, variables, (history, today, drifted))
        finally:
            embedded_broker.stop(settings)


def counts(events: list[dict[str, Any]], event_types: set[str], bucket: timedelta) -> Counter[tuple[datetime, str]]:
    seconds = bucket.total_seconds()
    return Counter(
        (datetime.fromtimestamp(e["at"].timestamp() // seconds * seconds, UTC), e["event_type"])
        for e in events
        if e["event_type"] in event_types
    )


def test_volume_drop_and_spike_fire_and_the_other_hours_stay_quiet(landed: Landed) -> None:
    per_hour = counts(landed.unique, set(ACTIVITY_TYPES), HOUR)
    with landed.build() as con:
        for kind, sign in (("volume-drop", -1), ("volume-spike", 1)):
            hour = INCIDENTS[kind].at
            outcome = anomalies.volume(con, end=hour + HOUR)
            assert not outcome.passed, outcome.description
            assert outcome.period == (hour, hour + HOUR)
            for event_type in ACTIVITY_TYPES:
                judged = outcome.judgements[event_type]
                assert judged.observed == per_hour[hour, event_type]
                # The same hour of every earlier day: the data starts 5 days before.
                assert judged.baseline == tuple(per_hour[hour - back * DAY, event_type] for back in range(1, 6))
            assert "user_visit" in outcome.anomalies and sign * outcome.judgements["user_visit"].z >= 4
        for quiet in QUIET_HOURS:
            outcome = anomalies.volume(con, end=LAST_DAY + (quiet + 1) * HOUR)
            assert outcome.passed, outcome.description
        latest = anomalies.volume(con)  # the last complete hour of the build's data (it ends at the drift)
        assert latest.period == (DRIFT_FROM - HOUR, DRIFT_FROM) and latest.passed
        assert latest.metadata()["observed"] == {t: per_hour[DRIFT_FROM - HOUR, t] for t in sorted(ACTIVITY_TYPES)}


def windows_before(start: datetime, length: timedelta, span: timedelta) -> list[datetime]:
    return [start - back * length for back in range(1, int(span / length) + 1)]


def test_error_spike_fires_and_quiet_windows_stay_quiet(landed: Landed) -> None:
    per_quarter = counts(landed.unique, {"app_error"}, QUARTER)
    spike = INCIDENTS["error-spike"].at
    with landed.build() as con:
        outcome = anomalies.error_spike(con, end=spike + QUARTER)
        judged = outcome.judgements["app errors"]
        assert not outcome.passed and judged.anomalous and judged.z >= 4
        assert judged.observed == per_quarter[spike, "app_error"] > 0
        assert judged.baseline == tuple(per_quarter[w, "app_error"] for w in windows_before(spike, QUARTER, DAY))
        spiked = [e for e in landed.unique if e["event_type"] == "app_error" and spike <= e["at"] < spike + QUARTER]
        by_code = Counter(f"{e['source']}/{e['payload']['error_code']}" for e in spiked)
        assert outcome.metadata()["errors_by_source_and_code"] == dict(by_code.most_common(10))
        for end in (spike, spike + 2 * QUARTER, DRIFT_FROM):  # before, after, and the latest window
            assert anomalies.error_spike(con, end=end).passed
        assert anomalies.error_spike(con).period == (DRIFT_FROM - QUARTER, DRIFT_FROM)


def test_dead_letter_spike_fires_on_resent_events_and_quiet_windows_stay_quiet(landed: Landed) -> None:
    spike = INCIDENTS["dead-letter-spike"]
    sent = Counter(event["event_id"] for event in landed.events)
    copies = [e for e in landed.unique if sent[e["event_id"]] == 2]
    assert copies and all(spike.covers(e["timestamp"]) for e in copies)
    with landed.build() as con:
        outcome = anomalies.dead_letter_spike(con, end=spike.end)
        judged = outcome.judgements["dead letters"]
        assert not outcome.passed and judged.z >= 4
        assert judged.observed == len(copies)
        assert judged.baseline == (0.0,) * 96  # nothing else was ever dead-lettered
        by_topic = Counter(f"events.{e['event_type']}" for e in copies)
        assert outcome.metadata()["dead_letters_by_topic"] == dict(by_topic.most_common(10))
        assert anomalies.dead_letter_spike(con, end=spike.at).passed
        assert anomalies.dead_letter_spike(con).passed


def funnel_completion(events: list[dict[str, Any]]) -> dict[date, tuple[int, int]]:
    """(visitors, purchasers) per UTC day of the whole shop's ordered funnel: a user reaches a step with an
    event of it at or after reaching the step before, the same day."""
    steps = list(ACTIVITY_TYPES)
    days: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["event_type"] in steps:
            days[event["at"].date(), event["user_id"]].append(event)
    reached: Counter[tuple[date, int]] = Counter()
    for (day, _), user_events in days.items():
        step = 0
        for event in sorted(user_events, key=lambda e: (e["at"], steps.index(e["event_type"]))):
            if step < len(steps) and event["event_type"] == steps[step]:
                step += 1
        reached.update((day, index) for index in range(step))
    return {day: (reached[day, 0], reached[day, 3]) for day, _ in reached}


def test_funnel_dip_fires_on_the_payment_outage_day_and_not_the_day_before(landed: Landed) -> None:
    funnel = funnel_completion(landed.unique)
    rates = {day: purchasers / visitors for day, (visitors, purchasers) in funnel.items()}
    with landed.build() as con:
        for day, dipped in ((LAST_DAY - DAY, True), (LAST_DAY - 2 * DAY, False)):
            outcome = anomalies.funnel_dip(con, end=day + DAY)
            judged = outcome.judgements[anomalies.FUNNEL_RATE]
            assert (not outcome.passed, judged.anomalous) == (dipped, dipped), outcome.description
            assert judged.observed == rates[day.date()]
            earlier = [(day - back * DAY).date() for back in range(1, 8)]
            assert judged.baseline == tuple(rates[d] for d in earlier if d in rates)
            metadata = outcome.metadata()
            assert (metadata["visitors"], metadata["purchasers"]) == funnel[day.date()]
        assert anomalies.funnel_dip(con).period == (LAST_DAY - DAY, LAST_DAY)  # the last complete day


def test_null_rate_drift_fires_when_product_ids_go_missing(landed: Landed) -> None:
    visits: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for event in landed.unique:
        if event["event_type"] == "user_visit":
            visits[event["at"].replace(minute=0, second=0, microsecond=0)].append(event)

    def share(hour: datetime, column: str) -> float:
        return sum(e["payload"][column] is None for e in visits[hour]) / len(visits[hour])

    drift = INCIDENTS["null-drift"].at
    with landed.build() as con:
        outcome = anomalies.null_rate_drift(con, end=drift + HOUR)
        assert outcome.anomalies == ["stg_user_visits.product_id"], outcome.description
        earlier = [h for h in windows_before(drift, HOUR, DAY) if len(visits[h]) >= anomalies.MIN_RATE_ROWS]
        assert len(earlier) == 23  # the volume drop's hour has too few rows to count
        for column in ("product_id", "referrer"):
            judged = outcome.judgements[f"stg_user_visits.{column}"]
            assert judged.observed == share(drift, column)
            assert judged.baseline == tuple(share(hour, column) for hour in earlier)
        assert outcome.judgements["stg_user_visits.product_id"].observed == 1.0
        for hour in (drift - HOUR, drift + HOUR, DRIFT_FROM - HOUR):
            assert anomalies.null_rate_drift(con, end=hour + HOUR).passed


def test_new_unknown_fields_fire_on_the_drifted_batches_only(landed: Landed) -> None:
    catalog = load_catalog(landed.settings)
    history, today, drifted = landed.ingested
    for name in ACTIVITY_TYPES:
        event_type = event_types()[name]
        clean = anomalies.new_unknown_fields(catalog, landed.settings, event_type, end=today, window=today - history)
        assert clean.passed and clean.note is None and clean.extra["observed"] == [], clean.description
        found = anomalies.new_unknown_fields(catalog, landed.settings, event_type, end=drifted, window=drifted - today)
        assert not found.passed, found.description
        assert found.extra["anomalies"] == found.extra["observed"] == [f"payload.{DRIFT_FIELD}"]
        assert found.extra["baseline"] == []
    errors = anomalies.new_unknown_fields(
        catalog, landed.settings, event_types()["app_error"], end=drifted, window=drifted - today
    )
    assert errors.passed and errors.note is None  # app errors did not drift


def test_a_short_history_passes_and_says_so(landed: Landed) -> None:
    start = DEFAULT_START
    with landed.build() as con:
        for outcome in (
            anomalies.volume(con, end=start + DAY + 11 * HOUR),  # 1 earlier day
            anomalies.error_spike(con, end=start + HOUR),  # 3 earlier windows
            anomalies.dead_letter_spike(con, end=start + HOUR),
            anomalies.funnel_dip(con, end=start + 3 * DAY),  # 2 earlier days
            anomalies.null_rate_drift(con, end=start + 5 * HOUR),  # 4 earlier hours
        ):
            assert outcome.passed and outcome.note is not None and outcome.note.startswith("not enough history")
            assert outcome.metadata()["note"] == outcome.note and not outcome.judgements


def evaluation(settings: Settings, key: dg.AssetCheckKey) -> dg.AssetCheckEvaluation:
    record = get_instance(settings).get_latest_asset_check_evaluation_record(key)
    assert record is not None and record.evaluation is not None, f"{key} never ran"
    return record.evaluation


def test_dagster_runs_them_as_warnings_after_the_build_and_every_hour(
    landed: Landed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analytics_platform.definitions import platform_definitions
    from analytics_platform.defs.quality.anomalies import ANOMALY_JOB, MART_CHECKS, UNKNOWN_FIELDS_CHECK

    set_environment(monkeypatch, **landed.variables)
    settings = get_settings()
    # The build run checked the marts it published (the default periods: the funnel's is the dip's day).
    for check in MART_CHECKS:
        found = evaluation(settings, dg.AssetCheckKey(check.asset, check.name))
        assert found.severity == dg.AssetCheckSeverity.WARN
        assert found.passed == (check.name != "funnel_dip"), (check.name, found.description)
        assert {"threshold", "observed", "baseline_median"} <= set(found.metadata), check.name

    result = platform_definitions().resolve_job_def(ANOMALY_JOB).execute_in_process(instance=get_instance(settings))
    assert result.success  # a warning never fails the run
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert len(evaluations) == len(MART_CHECKS) + len(event_types())
    assert not evaluations["marts/fct_funnel_daily", "funnel_dip"].passed
    for name in event_types():  # every batch landed within the hour: nothing earlier to compare with
        unknown = evaluations[f"raw/{name}", UNKNOWN_FIELDS_CHECK]
        assert unknown.passed and unknown.severity == dg.AssetCheckSeverity.WARN
        assert str(unknown.metadata["note"].value).startswith("not enough history")
    assert [key for key, found in evaluations.items() if not found.passed] == [("marts/fct_funnel_daily", "funnel_dip")]
