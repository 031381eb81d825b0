"""The short summary ``analytics-platform summary`` and the demo print: what landed and what it says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from pyiceberg.catalog import Catalog

from analytics_platform.contracts.envelope import event_types
from analytics_platform.exceptions import TableNotFoundError
from analytics_platform.lakehouse.snapshots import row_count
from analytics_platform.lakehouse.tables import DEAD_LETTER_TABLE, open_raw_table, open_table
from analytics_platform.settings import Settings
from analytics_platform.warehouse import connections


@dataclass(frozen=True)
class Summary:
    landed: dict[str, int]
    dead_lettered: int
    daily_active_users: list[tuple[date, int, int]]
    funnel: list[tuple[date, int, int, int, int]]
    revenue: list[tuple[date, Decimal | None, int, float | None, float | None]]


def landed_counts(catalog: Catalog, settings: Settings) -> tuple[dict[str, int], int]:
    """Rows per raw table and in the dead-letter table, from snapshot summaries (no data scan)."""
    landed = {
        name: row_count(table) if (table := open_raw_table(catalog, settings, t)) else 0
        for name, t in event_types().items()
    }
    try:
        dead_letters = row_count(open_table(catalog, settings, DEAD_LETTER_TABLE))
    except TableNotFoundError:
        dead_letters = 0
    return landed, dead_letters


def collect(catalog: Catalog, settings: Settings) -> Summary:
    landed, dead_lettered = landed_counts(catalog, settings)
    with connections.connect_marts(settings) as con:
        dau = con.execute("select activity_date, dau, wau from marts.fct_daily_active_users order by 1").fetchall()
        funnel = con.execute(
            "select activity_date, visitors, cart_users, checkout_users, purchasers "
            "from marts.fct_funnel_daily where category = 'all' order by 1"
        ).fetchall()
        revenue = con.execute(
            "select revenue_date, revenue_eur, orders, arpu, arppu from marts.fct_revenue_daily "
            "where orders > 0 order by 1"
        ).fetchall()
    return Summary(landed, dead_lettered, dau, funnel, revenue)


def render(summary: Summary) -> str:
    lines = [
        "Events landed in Iceberg",
        *(f"  raw.{name:<20} {count:>10,}" for name, count in summary.landed.items()),
        f"  {'total':<24} {sum(summary.landed.values()):>10,}",
        f"  {'raw.dead_letter':<24} {summary.dead_lettered:>10,}",
        "",
        "Active users (marts.fct_daily_active_users)",
        f"  {'date':<10}  {'DAU':>8}  {'WAU':>8}",
    ]
    lines += [f"  {day!s:<10}  {dau:>8,}  {wau:>8,}" for day, dau, wau in summary.daily_active_users if dau]
    lines += [
        "",
        "Funnel, users per step (marts.fct_funnel_daily)",
        f"  {'date':<10}  {'visit':>8}  {'cart':>8}  {'checkout':>8}  {'purchase':>8}  {'visit→purchase':>14}",
    ]
    for day, visitors, cart, checkout, purchase in summary.funnel:
        rate = f"{purchase / visitors:.1%}" if visitors else "-"
        lines.append(f"  {day!s:<10}  {visitors:>8,}  {cart:>8,}  {checkout:>8,}  {purchase:>8,}  {rate:>14}")
    lines += [
        "",
        "Revenue in EUR (marts.fct_revenue_daily)",
        f"  {'date':<10}  {'revenue':>12}  {'orders':>7}  {'ARPU':>8}  {'ARPPU':>8}",
    ]
    for day, revenue_eur, orders, arpu, arppu in summary.revenue:
        lines.append(f"  {day!s:<10}  {_money(revenue_eur):>12}  {orders:>7,}  {_money(arpu):>8}  {_money(arppu):>8}")
    return "\n".join(lines)


def _money(value: Decimal | float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"
