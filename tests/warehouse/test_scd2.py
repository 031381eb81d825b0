"""Reference data through the whole platform: change streams -> raw -> SCD2 snapshots -> dims -> as-of joins.

Expected values come from the generator's own version histories, not from the SQL under test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics_platform.contracts.envelope import event_types
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.kafka.producer import producer_options, publish
from analytics_platform.local.orchestration import build_marts
from analytics_platform.settings import Settings
from analytics_platform.sim.generator import Dataset, generate_dataset, version_at
from analytics_platform.warehouse.connections import connect_marts

pytestmark = pytest.mark.integration


def land(settings: Settings, dataset: Dataset) -> None:
    assert publish(dataset.events, settings, **producer_options(settings)) == len(dataset.events)
    for event_type in event_types().values():  # one batch per topic: many versions of a key in one batch
        ingest_until_caught_up(settings, event_type.topic)
    build_marts(settings)


def as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def test_snapshots_keep_every_version_and_facts_join_as_of_event_time(broker: Settings) -> None:
    dataset = generate_dataset(6_000, seed=5, days=3)
    land(broker, dataset)

    with connect_marts(broker) as marts:
        products = marts.execute(
            "select product_id, dbt_valid_from, dbt_valid_to, category, price, is_active "
            "from snapshots.snap_products order by product_id, dbt_valid_from"
        ).fetchall()
        users = marts.execute(
            "select user_id, dbt_valid_from, dbt_valid_to, plan, country from snapshots.snap_users "
            "order by user_id, dbt_valid_from"
        ).fetchall()
        enriched = marts.execute(
            "select event_id, event_at, product_id, category, product_price, plan from intermediate.int_events_enriched"
        ).fetchall()
        current = dict(marts.execute("select product_id, category from marts.dim_products").fetchall())

    expected_products = [
        (product_id, v.valid_from, nxt.valid_from if nxt else None, v.category, v.price, v.is_active)
        for product_id, versions in sorted(dataset.product_versions.items())
        for v, nxt in zip(versions, [*versions[1:], None], strict=True)
    ]
    actual_products = [
        (p, as_utc(start), as_utc(end) if end else None, category, price, active)
        for p, start, end, category, price, active in products
    ]
    assert actual_products == expected_products  # every version, with exact validity intervals
    assert len(users) == sum(len(versions) for versions in dataset.user_versions.values())
    assert current == {p: versions[-1].category for p, versions in dataset.product_versions.items()}

    changed = {p for p, versions in dataset.product_versions.items() if len({v.category for v in versions}) > 1}
    by_id = {event["event_id"]: event for event in dataset.events}
    categories_seen: dict[str, set[str]] = {}
    for event_id, event_at, product_id, category, price, plan in enriched:
        user = version_at(dataset.user_versions[by_id[event_id]["user_id"]], as_utc(event_at))
        assert user is not None and plan == user.plan, event_id
        if product_id is None:
            assert category is None
            continue
        product = version_at(dataset.product_versions[product_id], as_utc(event_at))
        assert product is not None and (category, price) == (product.category, product.price), event_id
        categories_seen.setdefault(product_id, set()).add(category)
    # The as-of join is visible: a product whose category changed shows both categories in its facts.
    assert any(len(categories_seen.get(p, set())) > 1 for p in changed)
