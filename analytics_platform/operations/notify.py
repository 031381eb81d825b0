"""One channel for the alerts the platform raises itself, for teams without Prometheus: a webhook or the log.

With ``PLATFORM_ALERT_WEBHOOK_URL`` set, each alert is POSTed as a Slack-compatible payload,
``{"text": ...}`` (what Slack's, Mattermost's and Rocket.Chat's incoming webhooks take; a small relay
adapts it to anything else); unset, it is logged at WARNING. The Dagster sensors of
``defs/operations`` decide *when* to alert (a failed run, a raw table or mart past its freshness
objective, and back); this module says *what* and delivers it, without Dagster, so it is unit-tested
and reusable.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from analytics_platform.exceptions import AlertDeliveryError
from analytics_platform.security.redaction import redact, url_origin
from analytics_platform.settings import Settings

WEBHOOK_TIMEOUT_S = 10.0
RUNBOOKS = "docs/runbooks.md"
LOGGER = logging.getLogger("analytics_platform.alerts")


class Log(Protocol):
    def warning(self, msg: str) -> None: ...


@dataclass(frozen=True)
class Alert:
    """Something a person should look at (``firing``), or the all-clear for it (``resolved``)."""

    status: Literal["firing", "resolved"]
    title: str
    detail: str = ""
    link: str | None = None  # where to look: the run in the Dagster UI, the asset's page
    runbook: str | None = None  # an anchor of docs/runbooks.md

    def text(self) -> str:
        """The message: one headline, the detail, then where to look (Slack's ``<url|label>`` links)."""
        mark = ":red_circle: [FIRING]" if self.status == "firing" else ":large_green_circle: [RESOLVED]"
        lines = [f"{mark} {self.title}"]
        if self.detail:
            lines.append(self.detail)
        where = []
        if self.link:
            where.append(f"<{self.link}|open in Dagster>")
        if self.runbook:
            where.append(f"runbook: {RUNBOOKS}#{self.runbook}")
        if where:
            lines.append(" · ".join(where))
        return "\n".join(lines)


def notify(settings: Settings, alert: Alert, log: Log | None = None) -> None:
    """Deliver ``alert`` to the webhook, or log it when none is configured (also to ``log``, a sensor's).

    Raises:
        AlertDeliveryError: the webhook did not take it (unreachable, or not a 2xx answer). The sensors let
            it fail their tick and keep their cursor, so the next tick sends the alert again.
    """
    text = alert.text()
    url = settings.alert_webhook_url
    if not url:
        message = f"alert (set PLATFORM_ALERT_WEBHOOK_URL to send it somewhere): {text}"
        LOGGER.warning(message)  # the process's log (the code server's, for a sensor)
        if log is not None:
            log.warning(message)  # a sensor's tick log, in the Dagster UI
        return
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
            answer.read()
    except (OSError, ValueError) as error:  # HTTPError (a 4xx or 5xx) is an OSError
        raise AlertDeliveryError(  # the path of an incoming webhook is its secret: never log it
            f"the alert webhook at {url_origin(url)} (PLATFORM_ALERT_WEBHOOK_URL) did not take an "
            f"alert ({redact(str(error))}); it is sent again on the next tick. The alert: {text}"
        ) from error


def run_url(settings: Settings, run_id: str) -> str:
    return f"{settings.dagster_ui_url.rstrip('/')}/runs/{run_id}"


def asset_url(settings: Settings, asset: str) -> str:
    return f"{settings.dagster_ui_url.rstrip('/')}/assets/{asset}"


def runbook_for_job(job_name: str) -> str:
    """The runbook section for a failed run of ``job_name``."""
    if job_name.startswith("ingest_") or job_name.startswith("replay_"):
        return "ingest-runs-failing"
    return "mart-freshness"


def run_failed(settings: Settings, job_name: str, run_id: str, message: str, *, terminal: bool) -> Alert:
    """The alert for a failed run: which job, why, and whether the platform retries it by itself
    (``terminal``: it failed with an error retrying cannot fix, see ``defs/retries.py``)."""
    if terminal:
        what_next = "It failed terminally: nothing requests this work again until a person acts (the error says how)."
    else:
        what_next = "Its sensor requests the same work again (as a new attempt) if it has one."
    first_line = message.strip().splitlines()[0] if message.strip() else "no error message"
    return Alert(
        "firing",
        f"Dagster run failed: {job_name} ({run_id[:8]})",
        f"{first_line}\n{what_next}",
        run_url(settings, run_id),
        runbook_for_job(job_name),
    )


def freshness_changes(
    previous: Mapping[str, str], current: Mapping[str, str], settings: Settings, runbooks: Mapping[str, str]
) -> list[Alert]:
    """Alerts for the assets that became stale (in ``current``, not in ``previous``: asset -> why) and
    for those fresh again; an asset stale on both sides is not repeated. ``runbooks``: asset -> section."""
    alerts = [
        Alert(
            "firing",
            f"{asset} is stale",
            current[asset],
            asset_url(settings, asset),
            runbooks.get(asset),
        )
        for asset in sorted(set(current) - set(previous))
    ]
    alerts += [
        Alert(
            "resolved",
            f"{asset} is fresh again",
            f"it was: {previous[asset]}",
            asset_url(settings, asset),
            runbooks.get(asset),
        )
        for asset in sorted(set(previous) - set(current))
    ]
    return alerts
