"""The alert channel: a Slack-compatible POST to the configured webhook, else the log; and what each alert says."""

from __future__ import annotations

import logging

import pytest

from analytics_platform.exceptions import AlertDeliveryError
from analytics_platform.operations.notify import Alert, freshness_changes, notify, run_failed
from analytics_platform.settings import Settings, get_settings
from tests.operations.webhook import receiving

pytestmark = pytest.mark.fast


def settings_with(**fields: object) -> Settings:
    return get_settings().model_copy(update=fields)


def test_an_alert_is_posted_as_slack_text_to_the_webhook() -> None:
    alert = Alert(
        "firing", "raw/purchase is stale", "no materialization for over 5 min", "http://ui/a", "raw-freshness"
    )
    with receiving() as webhook:
        notify(settings_with(alert_webhook_url=webhook.url), alert)
    assert webhook.payloads == [
        {
            "text": ":red_circle: [FIRING] raw/purchase is stale\n"
            "no materialization for over 5 min\n"
            "<http://ui/a|open in Dagster> · runbook: docs/runbooks.md#raw-freshness"
        }
    ]


def test_without_a_webhook_the_alert_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="analytics_platform.alerts"):
        notify(settings_with(alert_webhook_url=None), Alert("resolved", "marts/fct_sessions is fresh again"))
    assert [record.getMessage() for record in caplog.records] == [
        "alert (set PLATFORM_ALERT_WEBHOOK_URL to send it somewhere): "
        ":large_green_circle: [RESOLVED] marts/fct_sessions is fresh again"
    ]


def test_a_webhook_that_refuses_fails_loudly_without_leaking_its_secret_path() -> None:
    with receiving("/hooks/T1/B2/very-secret") as webhook:
        webhook.status = 500
        with pytest.raises(AlertDeliveryError) as raised:
            notify(settings_with(alert_webhook_url=webhook.url), Alert("firing", "x"))
    message = str(raised.value)
    assert "PLATFORM_ALERT_WEBHOOK_URL" in message and "500" in message
    assert "very-secret" not in message and webhook.payloads == []


def test_a_failed_run_says_whether_the_platform_retries_it() -> None:
    settings = settings_with(dagster_ui_url="http://dagster:3000/")
    terminal = run_failed(
        settings, "ingest_purchase", "0123456789ab", "  raw__purchase: OffsetMismatchError: x\nmore", terminal=True
    )
    assert terminal == Alert(
        "firing",
        "Dagster run failed: ingest_purchase (01234567)",
        "raw__purchase: OffsetMismatchError: x\n"
        "It failed terminally: nothing requests this work again until a person acts (the error says how).",
        "http://dagster:3000/runs/0123456789ab",
        "ingest-runs-failing",
    )
    transient = run_failed(settings, "refresh_marts", "ffff0000", "", terminal=False)
    assert transient.detail == (
        "no error message\nIts sensor requests the same work again (as a new attempt) if it has one."
    )
    assert transient.runbook == "mart-freshness"


def test_freshness_changes_fire_once_and_resolve() -> None:
    settings = settings_with(dagster_ui_url="http://ui")
    runbooks = {"raw/purchase": "raw-freshness", "marts/fct_sessions": "mart-freshness"}
    fired = freshness_changes({}, {"raw/purchase": "old"}, settings, runbooks)
    assert [(a.status, a.title, a.detail, a.link, a.runbook) for a in fired] == [
        ("firing", "raw/purchase is stale", "old", "http://ui/assets/raw/purchase", "raw-freshness")
    ]
    assert freshness_changes({"raw/purchase": "old"}, {"raw/purchase": "older"}, settings, runbooks) == []
    changed = freshness_changes({"raw/purchase": "old"}, {"marts/fct_sessions": "late"}, settings, runbooks)
    assert [(a.status, a.title) for a in changed] == [
        ("firing", "marts/fct_sessions is stale"),
        ("resolved", "raw/purchase is fresh again"),
    ]
