"""The short summary ``analytics-platform summary`` and the demo print: what landed and what it says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from analytics_platform import warehouse
from analytics_platform.events import EVENT_TYPES
from analytics_platform.ingest.lakehouse import dead_letter_table, raw_table
from analytics_platform.settings import Settings


@dataclass(frozen=True)
class Summary:
    landed: dict[str, int]
    dead_lettered: int
    daily_active_users: list[tuple[date, int]]
    funnel: list[tuple[date, int, int, int, int]]


def table_row_count(table: Table) -> int:
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.get("total-records") or 0)


def landed_counts(catalog: Catalog, settings: Settings) -> tuple[dict[str, int], int]:
    """Rows per raw table and in the dead-letter table, from snapshot summaries (no data scan)."""
    landed = {name: table_row_count(raw_table(catalog, settings, t)) for name, t in EVENT_TYPES.items()}
    return landed, table_row_count(dead_letter_table(catalog, settings))


def collect(catalog: Catalog, settings: Settings) -> Summary:
    landed, dead_lettered = landed_counts(catalog, settings)
    with warehouse.connect_marts(settings) as con:
        dau = con.execute("select activity_date, active_users from marts.fct_daily_active_users order by 1").fetchall()
        funnel = con.execute(
            "select activity_date, visitors, cart_users, checkout_users, purchasers "
            "from marts.fct_funnel_daily order by 1"
        ).fetchall()
    return Summary(landed, dead_lettered, dau, funnel)


def render(summary: Summary) -> str:
    lines = [
        "Events landed in Iceberg",
        *(f"  raw.{name:<12} {count:>10,}" for name, count in summary.landed.items()),
        f"  {'total':<16} {sum(summary.landed.values()):>10,}",
        f"  raw.dead_letter  {summary.dead_lettered:>10,}",
        "",
        "Daily active users (marts.fct_daily_active_users)",
    ]
    lines += [f"  {day}  {users:>8,}" for day, users in summary.daily_active_users]
    lines += [
        "",
        "Funnel, users per step (marts.fct_funnel_daily)",
        f"  {'date':<10}  {'visit':>8}  {'cart':>8}  {'checkout':>8}  {'purchase':>8}  {'visit→purchase':>14}",
    ]
    for day, visitors, cart, checkout, purchase in summary.funnel:
        rate = f"{purchase / visitors:.1%}" if visitors else "-"
        lines.append(f"  {day!s:<10}  {visitors:>8,}  {cart:>8,}  {checkout:>8,}  {purchase:>8,}  {rate:>14}")
    return "\n".join(lines)
