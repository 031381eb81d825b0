"""Data-quality anomalies: is the newest data unlike its own recent past?

The raw checks (:mod:`analytics_platform.quality.checks`) hold every batch to fixed rules. These compare
one figure of the newest complete period with a baseline of the same figure, so they catch what no fixed
rule can: a client that stopped sending (a volume drop), a bot or a campaign (a spike), a backend that
fails (an error spike), a client that retries what it already sent (a dead-letter spike), a payment
outage (a dip in funnel completion), a tracking regression (null-rate drift) and a producer sending fields
no schema declares (new unknown fields). Dagster runs them as non-blocking (WARN) asset checks
(``defs/quality/anomalies.py``): an anomaly asks a person to look, it never stops a build.

Periods are of event time, and "newest" is the data's own clock (:func:`data_clock`: the end of the newest
minute of ``fct_events_per_minute``, never later than now), so a replayed or backfilled history is judged
like a live one; the period judged is the last complete one before it. Unknown fields are recorded per
ingested batch, so that check runs on ingest time (the Iceberg snapshots' summaries) instead.

Each figure gets a robust z-score, ``(observed - median) / scale`` over its baseline values: the scale is
the baseline's median absolute deviation (x 1.4826, which is the standard deviation for normal data) but
never less than the noise the figure has by chance (Poisson for a count, binomial for a rate, times
BURSTINESS because a session sends several events at once): a few baseline periods that happen to agree
must not turn a small wobble into an incident. A baseline too short to judge by passes, saying so.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from analytics_platform.contracts.envelope import EventType
from analytics_platform.lakehouse.snapshots import INGESTED_AT_KEY, UNKNOWN_FIELDS_KEY, properties
from analytics_platform.lakehouse.tables import LINEAGE_TABLE, contract_for, open_raw_table, table_identifier
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import configure_object_storage, connect_marts

Z_THRESHOLD = 4.0  # |z| at or beyond which a figure is anomalous
MAD_TO_SD = 1.4826
BURSTINESS = 2.0  # chance noise allowed beyond Poisson or binomial: sessions send events in bursts
MIN_RATE_ROWS = 50  # a rate of fewer rows is too noisy to judge (and is left out of baselines)
RATE_SCALE_FLOOR = 0.01  # a rate's scale is never below one percentage point
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
SAME_HOUR_DAYS = 7  # volume and funnel: the same hour (or the days) of the previous week
MIN_SAME_HOUR_DAYS = 3
SPIKE_WINDOW = timedelta(minutes=15)  # errors and dead letters: sudden, so short windows ...
TRAILING = timedelta(hours=24)  # ... against those of the previous day (not seasonal enough to matter)
MIN_TRAILING_WINDOWS = 8
UNKNOWN_FIELDS_WINDOW = HOUR  # unknown fields: batches ingested in the last hour ...
UNKNOWN_FIELDS_HISTORY = timedelta(days=7)  # ... against those ingested in the 7 days before
# The nullable columns whose share of nulls is watched, per relation of the build (with its event time).
NULL_RATE_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "staging.stg_user_visits": ("event_at", ("product_id", "referrer")),
}
FUNNEL_RATE = "visit_to_purchase"

Direction = Literal["drop", "spike", "both"]


@dataclass(frozen=True)
class Judgement:
    """One figure of the judged period against its baseline."""

    series: str
    observed: float
    baseline: tuple[float, ...]
    median: float
    scale: float
    direction: Direction

    @property
    def z(self) -> float:
        return (self.observed - self.median) / self.scale

    @property
    def anomalous(self) -> bool:
        low, high = self.z <= -Z_THRESHOLD, self.z >= Z_THRESHOLD
        return {"drop": low, "spike": high, "both": low or high}[self.direction]

    def describe(self) -> str:
        return (
            f"{self.series} {_number(self.observed)} vs a baseline median of {_number(self.median)} (z {self.z:+.1f})"
        )


@dataclass(frozen=True)
class AnomalyOutcome:
    """What a check found: ``passed`` unless a figure is anomalous; ``note`` says why nothing was judged."""

    passed: bool
    description: str
    period: tuple[datetime, datetime] | None = None
    judgements: dict[str, Judgement] = field(default_factory=dict)
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def anomalies(self) -> list[str]:
        return [name for name, judgement in self.judgements.items() if judgement.anomalous]

    def metadata(self) -> dict[str, Any]:
        """The observed value, the baseline and the threshold of every figure, as check metadata."""
        found: dict[str, Any] = {"threshold": f"|z| >= {Z_THRESHOLD:g} ({_directions(self.judgements)})"}
        if self.period is not None:
            found["period_start"], found["period_end"] = (moment.isoformat() for moment in self.period)
        if self.note is not None:
            found["note"] = self.note
        if self.judgements:
            found["observed"] = {name: _round(j.observed) for name, j in self.judgements.items()}
            found["baseline_median"] = {name: _round(j.median) for name, j in self.judgements.items()}
            found["baseline"] = {name: [_round(v) for v in j.baseline] for name, j in self.judgements.items()}
            found["scale"] = {name: _round(j.scale) for name, j in self.judgements.items()}
            found["z"] = {name: round(j.z, 2) for name, j in self.judgements.items()}
            found["anomalies"] = self.anomalies
        return found | self.extra


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4f}"


def _round(value: float) -> float:
    return round(value, 6)


def _directions(judgements: dict[str, Judgement]) -> str:
    directions = {j.direction for j in judgements.values()} or {"both"}
    return ", ".join({"drop": "drops", "spike": "spikes", "both": "drops and spikes"}[d] for d in sorted(directions))


def judge(
    series: str, observed: float, baseline: list[float], noise: float, direction: Direction = "both"
) -> Judgement:
    """``observed`` against ``baseline`` (at least one value), the scale floored at ``noise``."""
    median = statistics.median(baseline)
    mad = statistics.median(abs(value - median) for value in baseline)
    return Judgement(series, observed, tuple(baseline), median, max(MAD_TO_SD * mad, noise), direction)


def count_noise(median: float) -> float:
    """The chance noise of a count around ``median``: Poisson, with room for bursts."""
    return BURSTINESS * math.sqrt(max(median, 1.0))


def rate_noise(median: float, rows: int) -> float:
    """The chance noise of a rate around ``median`` measured over ``rows``: binomial, with room for bursts."""
    return max(BURSTINESS * math.sqrt(median * (1 - median) / rows), RATE_SCALE_FLOOR)


def _outcome(what: str, period: tuple[datetime, datetime], judgements: dict[str, Judgement]) -> AnomalyOutcome:
    anomalous = [j for j in judgements.values() if j.anomalous]
    when = (
        f"{period[0]:%Y-%m-%d}" if period[1] - period[0] >= DAY else f"{period[0]:%Y-%m-%d %H:%M}-{period[1]:%H:%M} UTC"
    )
    if anomalous:
        description = f"{what} anomalous in {when}: " + "; ".join(j.describe() for j in anomalous)
    else:
        description = f"{what} within the baseline in {when} ({len(judgements)} figure(s), |z| < {Z_THRESHOLD:g})"
    return AnomalyOutcome(not anomalous, description, period, judgements)


def _quiet(description: str, note: str, period: tuple[datetime, datetime] | None = None) -> AnomalyOutcome:
    return AnomalyOutcome(True, description, period, note=note)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _floor(moment: datetime, period: timedelta) -> datetime:
    seconds = period.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, UTC)


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The published build, read-only, able to read its ``raw`` views (Iceberg)."""
    con = connect_marts(settings)
    con.execute("load iceberg")
    configure_object_storage(con, settings)
    return con


def data_clock(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The end of the newest minute with activity (``fct_events_per_minute``), at most now; None if none."""
    newest = con.execute("select epoch(max(event_minute)) from marts.fct_events_per_minute").fetchone()
    if newest is None or newest[0] is None:
        return None
    return min(datetime.fromtimestamp(newest[0], UTC) + timedelta(minutes=1), datetime.now(UTC))


def _period(
    con: duckdb.DuckDBPyConnection, end: datetime | None, length: timedelta
) -> tuple[datetime, datetime] | None:
    """The judged period: the one ending at ``end``, or the last complete one before the data clock."""
    if end is None:
        clock = data_clock(con)
        if clock is None:
            return None
        end = _floor(clock, length)
    end = _utc(end)
    return end - length, end


def _first(con: duckdb.DuckDBPyConnection, sql: str) -> datetime | None:
    """The first moment (epoch seconds from ``sql``) with data, or None."""
    row = con.execute(sql).fetchone()
    return datetime.fromtimestamp(row[0], UTC) if row is not None and row[0] is not None else None


NO_DATA = "no activity in the published marts yet"


def volume(con: duckdb.DuckDBPyConnection, end: datetime | None = None) -> AnomalyOutcome:
    """Events per activity type in the judged hour against the same hour on each of the previous 7 days
    (``fct_events_per_hour``): drops and spikes."""
    period = _period(con, end, HOUR)
    first = _first(con, "select epoch(min(event_hour)) from marts.fct_events_per_hour")
    if period is None or first is None:
        return _quiet("nothing to judge", NO_DATA)
    hours = [period[0] - back * DAY for back in range(1, SAME_HOUR_DAYS + 1) if period[0] - back * DAY >= first]
    if len(hours) < MIN_SAME_HOUR_DAYS:
        note = f"not enough history: {len(hours)} of the {MIN_SAME_HOUR_DAYS} earlier days needed have data"
        return _quiet(f"event volume not judged ({note})", note, period)
    counts = {
        (datetime.fromtimestamp(at, UTC), event_type): count
        for at, event_type, count in con.execute(
            "select epoch(event_hour), event_type, event_count from marts.fct_events_per_hour "
            "where event_hour >= ? and event_hour <= ?",
            [min(hours), period[0]],
        ).fetchall()
    }
    types = sorted({event_type for at, event_type in counts if at in (period[0], *hours)})
    judgements = {}
    for event_type in types:
        baseline = [float(counts.get((hour, event_type), 0)) for hour in hours]
        median = statistics.median(baseline)
        observed = float(counts.get((period[0], event_type), 0))
        judgements[event_type] = judge(event_type, observed, baseline, count_noise(median))
    return _outcome("event volume", period, judgements)


def _windows(period: tuple[datetime, datetime], first: datetime) -> list[datetime]:
    """Starts of the trailing windows (of the judged period's length) that have data to compare with."""
    length = period[1] - period[0]
    count = int(TRAILING / length)
    return [start for back in range(1, count + 1) if (start := period[0] - back * length) >= _floor(first, length)]


def _spike(
    con: duckdb.DuckDBPyConnection,
    end: datetime | None,
    what: str,
    per_minute_sql: str,
) -> tuple[AnomalyOutcome, dict[tuple[str, ...], int]]:
    """Counts of the judged window against the trailing windows: spikes only. ``per_minute_sql`` selects
    (epoch seconds, count, *breakdown) of the rows from ``$1`` (inclusive) to ``$2`` (exclusive)."""
    period = _period(con, end, SPIKE_WINDOW)
    first = _first(con, "select epoch(min(event_minute)) from marts.fct_events_per_minute")
    if period is None or first is None:
        return _quiet("nothing to judge", NO_DATA), {}
    windows = _windows(period, first)
    if len(windows) < MIN_TRAILING_WINDOWS:
        note = f"not enough history: {len(windows)} of the {MIN_TRAILING_WINDOWS} earlier windows needed have data"
        return _quiet(f"{what} not judged ({note})", note, period), {}
    earliest = min(windows)
    totals: Counter[datetime] = Counter()
    breakdown: Counter[tuple[str, ...]] = Counter()
    for at, count, *parts in con.execute(per_minute_sql, [earliest, period[1]]).fetchall():
        window = _floor(datetime.fromtimestamp(at, UTC), SPIKE_WINDOW)
        totals[window] += int(count)
        if window == period[0]:
            breakdown[tuple(str(part) for part in parts)] += int(count)
    baseline = [float(totals[window]) for window in windows]
    judgement = judge(what, float(totals[period[0]]), baseline, count_noise(statistics.median(baseline)), "spike")
    return _outcome(what, period, {what: judgement}), dict(breakdown.most_common(10))


def error_spike(con: duckdb.DuckDBPyConnection, end: datetime | None = None) -> AnomalyOutcome:
    """App errors (``fct_errors_per_minute``) in the judged 15 minutes against the previous 24 hours' windows."""
    outcome, breakdown = _spike(
        con,
        end,
        "app errors",
        "select epoch(event_minute), error_count, event_source, error_code from marts.fct_errors_per_minute "
        "where event_minute >= $1 and event_minute < $2",
    )
    return _with_breakdown(outcome, "errors_by_source_and_code", breakdown)


# When a dead letter happened: the timestamp its message carries where it parses (a replayed or backfilled
# history is judged like a live one), else when it was ingested (not JSON, a tombstone, no timestamp).
DEAD_LETTER_AT = (
    "coalesce(try(cast(json_extract_string(decode(raw_value), '$.timestamp') as timestamptz)), ingested_at)"
)


def dead_letter_spike(con: duckdb.DuckDBPyConnection, end: datetime | None = None) -> AnomalyOutcome:
    """Dead letters (``raw.dead_letter``, by the time their messages carry) in the judged 15 minutes against
    the previous 24 hours' windows."""
    outcome, breakdown = _spike(
        con,
        end,
        "dead letters",
        f"select epoch(date_trunc('minute', happened_at)), count(*), topic from ("
        f"  select {DEAD_LETTER_AT} as happened_at, kafka_topic as topic from raw.dead_letter"
        "  where ingested_at >= $1::timestamptz - interval 1 day"  # pushed down; a message may be a day late
        ") where happened_at >= $1 and happened_at < $2 group by all",
    )
    return _with_breakdown(outcome, "dead_letters_by_topic", breakdown)


def _with_breakdown(outcome: AnomalyOutcome, name: str, breakdown: dict[tuple[str, ...], int]) -> AnomalyOutcome:
    if not outcome.judgements:
        return outcome
    return replace(outcome, extra={name: {"/".join(key): count for key, count in breakdown.items()}})


def funnel_dip(con: duckdb.DuckDBPyConnection, end: datetime | None = None) -> AnomalyOutcome:
    """The whole shop's funnel completion (purchasers / visitors, ``fct_funnel_daily`` category ``all``) on
    the judged day against the previous 7 days: dips only."""
    period = _period(con, end, DAY)
    if period is None:
        return _quiet("nothing to judge", NO_DATA)
    rows = {
        datetime.fromtimestamp(at, UTC): (int(visitors), int(purchasers))
        for at, visitors, purchasers in con.execute(
            "select epoch(activity_date), visitors, purchasers from marts.fct_funnel_daily "
            "where category = 'all' and activity_date >= ? and activity_date <= ?",
            [(period[0] - SAME_HOUR_DAYS * DAY).date(), period[0].date()],
        ).fetchall()
    }
    earlier = [rows.get(period[0] - back * DAY, (0, 0)) for back in range(1, SAME_HOUR_DAYS + 1)]
    baseline = [purchasers / visitors for visitors, purchasers in earlier if visitors >= MIN_RATE_ROWS]
    visitors, purchasers = rows.get(period[0], (0, 0))
    if visitors < MIN_RATE_ROWS:
        note = f"too few visitors to judge: {visitors} (at least {MIN_RATE_ROWS})"
        return _quiet(f"funnel completion not judged ({note})", note, period)
    if len(baseline) < MIN_SAME_HOUR_DAYS:
        note = f"not enough history: {len(baseline)} of the {MIN_SAME_HOUR_DAYS} earlier days needed have data"
        return _quiet(f"funnel completion not judged ({note})", note, period)
    median = statistics.median(baseline)
    judgement = judge(FUNNEL_RATE, purchasers / visitors, baseline, rate_noise(median, visitors), "drop")
    outcome = _outcome("funnel completion", period, {FUNNEL_RATE: judgement})
    return replace(outcome, extra={"visitors": visitors, "purchasers": purchasers})


def null_rate_drift(con: duckdb.DuckDBPyConnection, end: datetime | None = None) -> AnomalyOutcome:
    """The share of nulls of each watched column (NULL_RATE_COLUMNS) in the judged hour against each of the
    previous 24 hours: drift either way."""
    period = _period(con, end, HOUR)
    first = _first(con, "select epoch(min(event_minute)) from marts.fct_events_per_minute")
    if period is None or first is None:
        return _quiet("nothing to judge", NO_DATA)
    windows = _windows(period, first)
    if len(windows) < MIN_TRAILING_WINDOWS:
        note = f"not enough history: {len(windows)} of the {MIN_TRAILING_WINDOWS} earlier hours needed have data"
        return _quiet(f"null rates not judged ({note})", note, period)
    judgements: dict[str, Judgement] = {}
    rows_judged: dict[str, int] = {}
    for relation, (time_column, columns) in NULL_RATE_COLUMNS.items():
        nulls = ", ".join(f"count(*) filter (where {column} is null)" for column in columns)
        per_hour = {
            datetime.fromtimestamp(hour * 3600, UTC): (int(rows), [int(n) for n in counts])
            for hour, rows, *counts in con.execute(
                f"select floor(epoch({time_column}) / 3600), count(*), {nulls} from {relation} "
                f"where {time_column} >= ? and {time_column} < ? group by 1",
                [min(windows), period[1]],
            ).fetchall()
        }
        rows, observed = per_hour.get(period[0], (0, [0] * len(columns)))
        rows_judged[relation] = rows
        if rows < MIN_RATE_ROWS:
            continue
        for index, column in enumerate(columns):
            baseline = [
                per_hour[hour][1][index] / per_hour[hour][0]
                for hour in windows
                if per_hour.get(hour, (0, []))[0] >= MIN_RATE_ROWS
            ]
            if len(baseline) < MIN_TRAILING_WINDOWS:
                continue
            series = f"{relation.split('.')[-1]}.{column}"
            median = statistics.median(baseline)
            judgements[series] = judge(series, observed[index] / rows, baseline, rate_noise(median, rows))
    if not judgements:
        note = (
            f"too few rows to judge (at least {MIN_RATE_ROWS} in the hour and in {MIN_TRAILING_WINDOWS} earlier ones)"
        )
        return AnomalyOutcome(True, f"null rates not judged ({note})", period, note=note, extra={"rows": rows_judged})
    return replace(_outcome("null rates", period, judgements), extra={"rows": rows_judged})


def new_unknown_fields(
    catalog: Catalog,
    settings: Settings,
    event_type: EventType,
    end: datetime | None = None,
    window: timedelta = UNKNOWN_FIELDS_WINDOW,
) -> AnomalyOutcome:
    """Undeclared fields that batches of ``raw.<event_type>`` ingested in the ``window`` (an hour) up to ``end``
    (default now) carried, and no batch ingested in the 7 days before did: a producer started sending a
    field no schema declares. (The blocking ``no_schema_drift`` check fails on any undeclared field; this
    one says when a new one appeared.) From the snapshot summaries: those the table keeps and those expired
    since (``raw.ingest_snapshots``)."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    start, since = end - window, end - window - UNKNOWN_FIELDS_HISTORY
    period = (start, end)
    table = open_raw_table(catalog, settings, event_type)
    if table is None:
        return _quiet(f"raw.{event_type.name} does not exist yet", "nothing landed", period)
    declared = {f"payload.{f.name}" for f in contract_for(settings, event_type).storage_fields}
    batches: dict[datetime, set[str]] = defaultdict(set)
    summaries = [properties(snapshot) for snapshot in table.snapshots()]
    summaries += _expired_summaries(catalog, settings, event_type, since)
    for summary in summaries:
        if (
            INGESTED_AT_KEY in summary
            and since <= (at := _utc(datetime.fromisoformat(summary[INGESTED_AT_KEY]))) <= end
        ):
            fields = json.loads(summary.get(UNKNOWN_FIELDS_KEY, "[]"))
            batches[at].update(name for name in fields if name not in declared)
    recent = set().union(*(fields for at, fields in batches.items() if at >= start))
    earlier = [fields for at, fields in batches.items() if at < start]
    if not earlier:
        note = f"not enough history: no batch ingested in the {UNKNOWN_FIELDS_HISTORY.days} days before the window"
        return _quiet(f"new unknown fields not judged ({note})", note, period)
    known = set().union(*earlier)
    new = sorted(recent - known)
    metadata = {
        "threshold": "any undeclared field the batches of the 7 days before did not carry",
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "observed": sorted(recent),
        "baseline": sorted(known),
        "anomalies": new,
        "batches": {"in_hour": sum(at >= start for at in batches), "before": len(earlier)},
    }
    description = (
        f"raw.{event_type.name}: new undeclared field(s) {', '.join(new)} since {start:%Y-%m-%d %H:%M} UTC; declare "
        "them in a new schema version (`analytics-platform schemas check`) or fix the producer"
        if new
        else f"raw.{event_type.name}: no undeclared field appeared since {start:%Y-%m-%d %H:%M} UTC"
    )
    return AnomalyOutcome(not new, description, period, extra=metadata)


def _expired_summaries(
    catalog: Catalog, settings: Settings, event_type: EventType, since: datetime
) -> list[dict[str, str]]:
    """The summaries ``raw.ingest_snapshots`` recorded for the table's expired snapshots ingested since ``since``."""
    try:
        lineage = catalog.load_table(table_identifier(settings, LINEAGE_TABLE))
    except NoSuchTableError:  # nothing was ever expired
        return []
    name = table_identifier(settings, event_type.name)
    rows = lineage.scan(
        row_filter=f"table_name = '{name}' and ingested_at >= '{since.isoformat()}'", selected_fields=("summary",)
    ).to_arrow()
    return [json.loads(summary) for summary in rows.column("summary").to_pylist()]
