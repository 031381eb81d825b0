"""Model build stage: the full dbt build (through Dagster) at N and 10xN events, and the daily build of one
new day at 10xN.

The 10xN input is the N landed events appended nine more times, each copy shifted by the span of the data
and relabelled (event, session, journey and order ids), so the marts see 10x the days, sessions and
orders of the same users. The copies are appended straight to the raw Iceberg tables: this stage
measures dbt, not ingestion.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from common import free_port, isolate, serving_broker, worker

SPAN_DAYS = 3  # the generator's days= for the ingest stage's data


def _copy(frame, copy: int, shift_days: int, offsets: int):  # type: ignore[no-untyped-def]
    import polars as pl

    suffix = f"~{copy}"
    copied = frame.with_columns(
        event_id=pl.lit(f"{copy:08x}") + pl.col("event_id").str.slice(8),
        session_id=pl.col("session_id") + suffix,
        correlation_id=pl.col("correlation_id") + suffix,
        event_at=pl.col("event_at") + pl.duration(days=shift_days),
        kafka_offset=pl.col("kafka_offset") + copy * offsets,
    )
    if "order_id" in frame.schema["payload"].to_schema():  # type: ignore[attr-defined]
        copied = copied.with_columns(pl.col("payload").struct.with_fields(pl.field("order_id") + suffix))
    return copied


def grow(settings, factor: int, *, only_day: date | None = None) -> int:  # type: ignore[no-untyped-def]
    """Append copies ``1 .. factor - 1`` of each raw table's original rows; with ``only_day``,
    one copy of the original first day's rows moved to that day. Returns the rows appended."""
    import polars as pl

    from analytics_platform.contracts.envelope import event_types
    from analytics_platform.lakehouse.catalog import load_catalog
    from analytics_platform.lakehouse.tables import ensure_raw_table

    catalog = load_catalog(settings)
    appended = 0
    for event_type in event_types().values():
        table = ensure_raw_table(catalog, settings, event_type)
        original = pl.from_arrow(table.scan().to_arrow())
        original = original.filter(~pl.col("session_id").str.contains("~"))  # type: ignore[union-attr]
        if original.is_empty():
            continue
        offsets = int(original["kafka_offset"].max()) + 1  # type: ignore[arg-type]
        target = table.schema().as_arrow()
        if only_day is not None:
            first = original["event_at"].min().date()  # type: ignore[union-attr]
            day = original.filter(pl.col("event_at").dt.date() == first)
            copies = [_copy(day, factor, (only_day - first).days, offsets)]
        else:
            copies = [_copy(original, k, k * SPAN_DAYS, offsets) for k in range(1, factor)]
        copied = pl.concat(copies)
        table.append(copied.select(target.names).to_arrow().cast(target))  # one commit per table
        appended += copied.height
    return appended


def run(home: Path, *, events: int, repeat: int, start: date, echo) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from analytics_platform.settings import get_settings

    isolate(home, free_port())  # the ingest stage's home, whose raw tables hold `events` events
    settings = get_settings()

    with serving_broker():  # the builds end by sending the metrics topic

        def builds(label: str, *args: object) -> list[dict[str, Any]]:
            results = []
            for index in range(repeat):
                result = worker("build", *args)
                results.append(result)
                echo(f"  {label} rep {index + 1}: {result['seconds']:.1f}s, peak RSS {result['peak_rss_mb']:,.0f} MiB")
            return results

        full_small = builds(f"full build at {events:,} events", "full")
        echo(f"growing the raw tables to {10 * events:,} events ...")
        grow(settings, 10)
        full_large = builds(f"full build at {10 * events:,} events", "full")
        new_day = start + timedelta(days=10 * SPAN_DAYS)
        added = grow(settings, 10, only_day=new_day)
        echo(f"one new day ({new_day}, {added:,} events) ...")
        day = builds(f"daily build of {new_day}", "day", new_day.isoformat())
        return {"full_small": full_small, "full_large": full_large, "day": day, "day_events": added}
