"""The raw tables' blocking asset checks: pass on clean data, stop the marts build when they fail."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from analytics_platform.contracts.envelope import encode_event, event_types
from analytics_platform.exceptions import QualityGateError
from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.lakehouse.tables import open_raw_table
from analytics_platform.local.instance import get_instance
from analytics_platform.local.orchestration import build_marts
from analytics_platform.quality.checks import CHECKS, no_schema_drift
from analytics_platform.settings import Settings, get_settings
from analytics_platform.warehouse.connections import current_build
from tests.conftest import set_environment
from tests.helpers import add_payload_field, produce, schema_dir_with_v2, send_raw

pytestmark = pytest.mark.integration


def ingest_all(settings: Settings) -> None:
    for event_type in event_types().values():
        ingest_until_caught_up(settings, event_type.topic)


def latest_evaluation(settings: Settings, event_type: str, check: str) -> dg.AssetCheckEvaluation:
    key = dg.AssetCheckKey(dg.AssetKey(["raw", event_type]), check)
    record = get_instance(settings).get_latest_asset_check_evaluation_record(key)
    assert record is not None and record.evaluation is not None, f"{key} never ran"
    return record.evaluation


def test_checks_pass_on_clean_data_and_block_the_marts_on_bad_data(
    broker: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events = produce(broker, 4_000, seed=31)
    ingest_all(broker)
    build_marts(broker)
    for event_type in event_types():
        for check in CHECKS:
            assert latest_evaluation(broker, event_type, check.name).passed, (event_type, check.name)
    published = current_build(broker)

    # purchase: 5% dead letters; add_to_cart: a duplicate past the dedup window; checkout: an undeclared field.
    purchases = [e for e in events if e["event_type"] == "purchase"]
    bad = [dict(e, event_id=f"neg-{i}", payload=dict(e["payload"], revenue=-1)) for i, e in enumerate(purchases)]
    send_raw(broker, "events.purchase", [(encode_event(e), e["user_id"].encode()) for e in bad[: len(bad) // 20 + 1]])
    cart = next(e for e in events if e["event_type"] == "add_to_cart")
    checkout = next(e for e in events if e["event_type"] == "checkout")
    drifted = dict(checkout, event_id="drifted", payload=dict(checkout["payload"], gift_wrap=True))
    send_raw(broker, "events.checkout", [(encode_event(drifted), drifted["user_id"].encode())])
    set_environment(monkeypatch, PLATFORM_DEDUP_WINDOW_EVENTS="0")
    settings = get_settings()
    send_raw(settings, "events.add_to_cart", [(encode_event(cart), cart["user_id"].encode())])
    ingest_all(settings)

    with pytest.raises(QualityGateError) as failure:
        build_marts(settings)
    message = str(failure.value)
    assert "raw/purchase dead_letter_rate" in message
    assert "raw/add_to_cart unique_event_ids" in message
    assert "raw/checkout no_schema_drift: undeclared fields seen: payload.gift_wrap" in message
    assert current_build(settings) == published  # the marts were not rebuilt

    rate = latest_evaluation(settings, "purchase", "dead_letter_rate")
    assert not rate.passed and rate.metadata["dead_letters"].value == len(bad) // 20 + 1
    assert rate.metadata["top_failed_checks"].value == {"payload.revenue:non_negative": len(bad) // 20 + 1}
    duplicates = latest_evaluation(settings, "add_to_cart", "unique_event_ids")
    assert not duplicates.passed and duplicates.metadata["duplicated_event_ids"].value == 1
    assert latest_evaluation(settings, "user_visit", "dead_letter_rate").passed

    # Once a schema version declares the field, it is no longer drift (no need to wait for the window).
    gift_wrap = add_payload_field("gift_wrap", ["null", "boolean"], default=None)
    schemas = schema_dir_with_v2(tmp_path, "checkout", gift_wrap)
    set_environment(monkeypatch, PLATFORM_SCHEMA_DIR=str(schemas))
    fixed = get_settings()
    catalog = load_catalog(fixed)
    checkouts = open_raw_table(catalog, fixed, event_types()["checkout"])
    assert checkouts is not None
    assert no_schema_drift(catalog, fixed, checkouts, event_types()["checkout"]).passed


def test_dbt_tests_are_asset_checks_in_the_marts_job() -> None:
    from analytics_platform.definitions import platform_definitions

    job = platform_definitions().resolve_job_def("build_marts")
    checks = {key.to_user_string() for key in job.asset_layer.asset_graph.asset_check_keys}
    assert "staging/stg_purchases:unique_stg_purchases_event_id" in checks
    assert "staging/stg_purchases:relationships_stg_purchases_order_id__order_id__ref_stg_checkouts_" in checks
    assert any(c.startswith("intermediate/int_events_unioned:accepted_values_int_events_unioned") for c in checks)
    assert "raw/purchase:dead_letter_rate" in checks
