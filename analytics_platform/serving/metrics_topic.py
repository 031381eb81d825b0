"""``metrics.latest`` (``PLATFORM_METRICS_TOPIC``): the headline metrics as a compacted Kafka topic, for
dashboards and services that follow metrics without querying.

After each build and each live refresh, every headline value of the published build goes to the topic,
keyed ``<metric>:<grain>:<bucket>`` (``dau:day:2026-11-03``), its value JSON with the number, the build
and its ``as_of`` (the API's: per raw table the snapshot and newest event time). The topic is created
with ``cleanup.policy=compact``, so Kafka keeps the last value per key: a consumer that reads it from
the start and keeps the last value per key holds every bucket's current value. Daily metrics cover
every day; per-minute ones the last :data:`MINUTES` minutes of the build (older minutes stay as they
were last sent: the API serves their history). A publisher sends only what changed since it last sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from confluent_kafka import Producer

from analytics_platform.exceptions import DeliveryError
from analytics_platform.kafka.admin import create_topics
from analytics_platform.kafka.client_config import client_config
from analytics_platform.serving.published import OpenBuild
from analytics_platform.settings import Settings

TOPIC_CONFIG = {"cleanup.policy": "compact"}
MINUTES = 60  # per-minute metrics: the buckets a live dashboard shows
FLUSH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Headline:
    metric: str
    grain: str  # day or minute
    sql: str  # (bucket, value) rows of the published build


HEADLINES = (
    Headline("dau", "day", "select activity_date, dau from marts.fct_daily_active_users"),
    Headline("wau", "day", "select activity_date, wau from marts.fct_daily_active_users"),
    Headline("mau", "day", "select activity_date, mau from marts.fct_daily_active_users"),
    Headline("revenue_eur", "day", "select revenue_date, revenue_eur from marts.fct_revenue_daily"),
    Headline("arpu", "day", "select revenue_date, arpu from marts.fct_revenue_daily"),
    Headline("arppu", "day", "select revenue_date, arppu from marts.fct_revenue_daily"),
    Headline(
        "conversion_rate",
        "day",
        "select activity_date, visit_to_purchase_rate from marts.fct_funnel_daily where category = 'all'",
    ),
    Headline(
        "events",
        "minute",
        "select event_minute, sum(event_count) from marts.fct_events_per_minute group by 1",
    ),
    Headline("revenue_eur", "minute", "select event_minute, revenue_eur from marts.fct_revenue_per_minute"),
)


def headline_values(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """``{key: value}`` of every headline in the build ``con`` reads (see the module docstring)."""
    values: dict[str, Any] = {}
    for headline in HEADLINES:
        query = f"with series(bucket, value) as ({headline.sql}) select bucket, value from series"
        if headline.grain == "minute":
            query += f" where bucket > (select max(bucket) from series) - interval {MINUTES} minutes"
        for bucket, value in con.execute(query).fetchall():
            values[f"{headline.metric}:{headline.grain}:{_iso(bucket)}"] = _number(value)
    return values


def ensure_topic(settings: Settings) -> None:
    create_topics(settings, 1, [settings.metrics_topic], config=TOPIC_CONFIG)


class MetricsPublisher:
    """Sends the published build's headline values that changed since this publisher last sent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sent: dict[str, Any] = {}
        self._producer: Producer | None = None

    @property
    def topic(self) -> str:
        return self._settings.metrics_topic

    def publish(self, con: duckdb.DuckDBPyConnection, build_id: str, build: Path) -> int:
        """Send the changed headline values of ``build`` (read on ``con``); returns how many were sent
        (0 when ``PLATFORM_METRICS_TOPIC`` is empty)."""
        if not self._settings.metrics_topic:
            return 0
        values = headline_values(con)
        opened = OpenBuild(build_id, build, con, datetime.fromtimestamp(build.stat().st_mtime, UTC))
        as_of = {"day": opened.as_of(live=False).as_json(), "minute": opened.as_of(live=True).as_json()}
        changed = {key: value for key, value in values.items() if self._sent.get(key, object()) != value}
        if not changed:
            return 0
        if self._producer is None:
            ensure_topic(self._settings)
            self._producer = Producer({**client_config(self._settings), "enable.idempotence": True, "acks": "all"})
        failures: list[str] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        for key, value in sorted(changed.items()):
            metric, grain, bucket = key.split(":", 2)
            record = {
                "metric": metric,
                "grain": grain,
                "bucket": bucket,
                "value": value,
                "build": build_id,
                "as_of": as_of[grain],
            }
            self._producer.produce(
                self._settings.metrics_topic, key=key.encode(), value=json.dumps(record).encode(), on_delivery=delivered
            )
            self._producer.poll(0)
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left or failures:
            raise DeliveryError(
                f"{left + len(failures)} of {len(changed)} headline values were not acknowledged by Kafka at "
                f"{self._settings.bootstrap_servers} ({failures[0] if failures else 'flush timed out'}); "
                "the next build or live refresh sends them again"
            )
        self._sent.update(changed)
        return len(changed)


def _iso(bucket: Any) -> str:
    return bucket.isoformat() if isinstance(bucket, date | datetime) else str(bucket)


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value
