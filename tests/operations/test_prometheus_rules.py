"""The shipped Prometheus and Alertmanager configuration: valid for the real tools (promtool, amtool), every
alert unit-tested firing and quiet, with a `for:` and a runbook, and renderable for other ports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from analytics_platform.exceptions import ConfigError
from analytics_platform.operations.prometheus import (
    ALERTMANAGER_CONFIG,
    OPS_DIR,
    PROMETHEUS_CONFIG,
    RULES_DIR,
    OpsConfig,
    RuleChange,
    render,
)
from tests.helpers import free_port

pytestmark = pytest.mark.integration

RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = OPS_DIR / "prometheus" / "tests" / "alerts_test.yml"
RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"
ANCHORS = {
    "lag-growing",
    "backlog-growing",
    "raw-freshness",
    "mart-freshness",
    "dead-letters-filling",
    "ingest-runs-failing",
    "exporter-down",
}


def run(*command: str | Path) -> str:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_the_shipped_files_pass_promtool_and_amtool() -> None:
    assert "SUCCESS: 9 rules found" in run("promtool", "check", "rules", RULES)
    assert "is valid prometheus config file syntax" in run("promtool", "check", "config", PROMETHEUS_CONFIG)
    # docker-compose.yml's Prometheus: the same rule files, the compose services as targets.
    compose = PROMETHEUS_CONFIG.with_name("prometheus-compose.yml")
    assert "SUCCESS: 9 rules found" in run("promtool", "check", "config", compose)
    assert (
        yaml.safe_load(compose.read_text())["rule_files"] == yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]
    )
    assert "SUCCESS" in run("amtool", "check-config", ALERTMANAGER_CONFIG)


def test_every_alert_fires_and_stays_quiet_in_promtools_unit_tests() -> None:
    assert "SUCCESS" in run("promtool", "test", "rules", RULE_TESTS)
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        mine = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"no test where {alert['alert']} fires"
        assert any(not case["exp_alerts"] for case in mine), f"no test where {alert['alert']} stays quiet"


def test_every_alert_waits_and_names_its_runbook() -> None:
    used = set()
    for alert in alerts():
        assert re.fullmatch(r"\d+[smh]", alert["for"]), alert["alert"]
        runbook = alert["annotations"]["runbook_url"]
        assert runbook.startswith("docs/runbooks.md#"), alert["alert"]
        used.add(runbook.removeprefix("docs/runbooks.md#"))
    assert used == ANCHORS
    # GitHub's anchors of the runbook's headings ("## Lag growing" -> #lag-growing).
    headings = re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}
    assert anchors >= ANCHORS, f"docs/runbooks.md has no section for {sorted(ANCHORS - anchors)}"


def test_rendered_configuration_is_valid_with_other_ports_and_a_lowered_alert(tmp_path: Path) -> None:
    config = OpsConfig(
        exporter_target=f"127.0.0.1:{free_port()}",
        api_target=f"127.0.0.1:{free_port()}",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        scrape_interval="1s",
        evaluation_interval="1s",
        webhook_url="http://127.0.0.1:1/hook",
        group_wait="1s",
        group_interval="1s",
        rule_changes={"IngestLagHigh": RuleChange(for_="2s", replace=("> 60", "> 5"))},
    )
    prometheus, alertmanager = render(config, tmp_path)
    assert "SUCCESS: 9 rules found" in run("promtool", "check", "config", prometheus)
    assert "SUCCESS" in run("amtool", "check-config", alertmanager)
    rendered = yaml.safe_load(prometheus.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in rendered["scrape_configs"]}
    assert targets == {
        "analytics-platform-exporter": [config.exporter_target],
        "analytics-platform-api": [config.api_target],
    }
    assert rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{config.alertmanager_port}"
    ]
    lag = next(
        rule
        for group in yaml.safe_load((tmp_path / "rules" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
        if rule["alert"] == "IngestLagHigh"
    )
    assert (lag["for"], lag["expr"]) == ("2s", "max by (topic, event_type) (analytics_platform_lag_seconds) > 5")
    receiver = yaml.safe_load(alertmanager.read_text())["receivers"][0]
    assert receiver["webhook_configs"] == [{"url": "http://127.0.0.1:1/hook", "send_resolved": True}]

    with pytest.raises(ConfigError, match="not exactly once"):
        render(OpsConfig("a:1", "b:2", rule_changes={"IngestLagHigh": RuleChange(replace=("> 61", "> 5"))}), tmp_path)
    with pytest.raises(ConfigError, match="no shipped alert"):
        render(OpsConfig("a:1", "b:2", rule_changes={"NoSuchAlert": RuleChange(for_="1s")}), tmp_path)
