"""``make ops``: Prometheus and Alertmanager on the configuration shipped in ``ops/``, until Ctrl-C.

The shipped files (``ops/prometheus/prometheus.yml``, its ``rules/`` and ``ops/alertmanager/alertmanager.yml``)
are what a deployment copies; :func:`render` writes a copy with the ports, targets and intervals of one run
(a test's free ports and 1-second intervals, say), and may change an alert's ``for:`` and threshold so a
test need not wait minutes. Both servers are Debian's packages (``prometheus`` 2.42,
``prometheus-alertmanager`` 0.25); their data lives under ``<home>/ops``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from analytics_platform.exceptions import ConfigError, PlatformError
from analytics_platform.local.processes import spawn, stop_group
from analytics_platform.settings import Settings

OPS_DIR = Path(__file__).resolve().parents[2] / "ops"
PROMETHEUS_CONFIG = OPS_DIR / "prometheus" / "prometheus.yml"
RULES_DIR = OPS_DIR / "prometheus" / "rules"
ALERTMANAGER_CONFIG = OPS_DIR / "alertmanager" / "alertmanager.yml"
EXPORTER_JOB = "analytics-platform-exporter"
API_JOB = "analytics-platform-api"
INSTALL_HINT = "install Debian's packages: `apt-get install -y prometheus prometheus-alertmanager` (as root)"
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RuleChange:
    """A change to one shipped alert for a run: its ``for:`` and/or one text replacement in its expression
    (e.g. ``("> 60", "> 3")``), which must occur exactly once."""

    for_: str | None = None
    replace: tuple[str, str] | None = None


@dataclass(frozen=True)
class OpsConfig:
    """Where the servers listen, what Prometheus scrapes and how often, and where Alertmanager sends."""

    exporter_target: str
    api_target: str
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    webhook_url: str | None = None
    group_wait: str | None = None
    group_interval: str | None = None
    resend_delay: str = "1m"
    rule_changes: Mapping[str, RuleChange] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> OpsConfig:
        """Scrape the exporter and the API where the settings put them (PLATFORM_EXPORTER_*, PLATFORM_API_*)."""
        return cls(
            exporter_target=f"{settings.exporter_host}:{settings.exporter_port}",
            api_target=f"{settings.api_host}:{settings.api_port}",
            **options,
        )


def _changed_rules(rules: dict[str, Any], changes: Mapping[str, RuleChange]) -> dict[str, Any]:
    unknown = set(changes) - {rule.get("alert") for group in rules["groups"] for rule in group["rules"]}
    if unknown:
        raise ConfigError(f"no shipped alert is named {sorted(unknown)}")
    for group in rules["groups"]:
        for rule in group["rules"]:
            change = changes.get(rule.get("alert", ""))
            if change is None:
                continue
            if change.for_ is not None:
                rule["for"] = change.for_
            if change.replace is not None:
                old, new = change.replace
                if rule["expr"].count(old) != 1:
                    raise ConfigError(f"{old!r} is not exactly once in the expression of {rule['alert']}")
                rule["expr"] = rule["expr"].replace(old, new)
    return rules


def render(config: OpsConfig, folder: Path) -> tuple[Path, Path]:
    """Write Prometheus's and Alertmanager's configuration for ``config`` into ``folder``; returns their paths."""
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    prometheus["global"]["scrape_interval"] = config.scrape_interval
    prometheus["global"]["evaluation_interval"] = config.evaluation_interval
    prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{config.alertmanager_port}"
    ]
    targets = {EXPORTER_JOB: config.exporter_target, API_JOB: config.api_target}
    for job in prometheus["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"][0]["targets"] = [targets[job["job_name"]]]
    rules_folder = folder / "rules"
    shutil.rmtree(rules_folder, ignore_errors=True)
    rules_folder.mkdir(parents=True)
    for rules_file in sorted(RULES_DIR.glob("*.yml")):
        rules = _changed_rules(yaml.safe_load(rules_file.read_text()), config.rule_changes)
        (rules_folder / rules_file.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    prometheus["rule_files"] = [str(rules_folder / "*.yml")]
    prometheus_path = folder / "prometheus.yml"
    prometheus_path.write_text(yaml.safe_dump(prometheus, sort_keys=False))

    alertmanager = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    if config.webhook_url:
        receiver = next(r for r in alertmanager["receivers"] if r["name"] == alertmanager["route"]["receiver"])
        receiver["webhook_configs"] = [{"url": config.webhook_url, "send_resolved": True}]
    for key, value in (("group_wait", config.group_wait), ("group_interval", config.group_interval)):
        if value is not None:
            alertmanager["route"][key] = value
    alertmanager_path = folder / "alertmanager.yml"
    alertmanager_path.write_text(yaml.safe_dump(alertmanager, sort_keys=False))
    return prometheus_path, alertmanager_path


def binary(*names: str) -> str:
    """The first of ``names`` on PATH (Debian names Alertmanager's binary prometheus-alertmanager)."""
    for name in names:
        if found := shutil.which(name):
            return found
    raise ConfigError(f"{' or '.join(names)} is not installed; {INSTALL_HINT}")


def ready(url: str) -> bool:
    """Whether the Prometheus or Alertmanager at ``url`` answers its readiness probe."""
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class RunningOps:
    prometheus_url: str
    alertmanager_url: str
    folder: Path
    processes: dict[str, subprocess.Popen[bytes]]

    def exited(self) -> str | None:
        """The name of a server whose process has exited, if one has."""
        return next((name for name, process in self.processes.items() if process.poll() is not None), None)


@contextlib.contextmanager
def running_ops(settings: Settings, config: OpsConfig, folder: Path | None = None) -> Iterator[RunningOps]:
    """Prometheus and Alertmanager on ``config``, rendered into ``folder`` (default ``<home>/ops``), with
    their data there; both stopped on exit."""
    prometheus_binary = binary("prometheus")
    alertmanager_binary = binary("alertmanager", "prometheus-alertmanager")
    folder = (folder or settings.home / "ops").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    prometheus_config, alertmanager_config = render(config, folder)
    prometheus_url = f"http://127.0.0.1:{config.prometheus_port}"
    alertmanager_url = f"http://127.0.0.1:{config.alertmanager_port}"
    commands = {
        "alertmanager": [
            alertmanager_binary,
            f"--config.file={alertmanager_config}",
            f"--storage.path={folder / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{config.alertmanager_port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
        "prometheus": [
            prometheus_binary,
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={folder / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{config.prometheus_port}",
            f"--rules.alert.resend-delay={config.resend_delay}",
        ],
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            processes[name] = spawn(command, folder / "logs" / f"{name}.log")
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, url in (("alertmanager", alertmanager_url), ("prometheus", prometheus_url)):
            while not ready(url):
                process = processes[name]
                if process.poll() is not None or time.monotonic() > deadline:
                    log = folder / "logs" / f"{name}.log"
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
                    raise PlatformError(f"{name} did not start (see {log}):\n{tail}")
                time.sleep(0.2)
        yield RunningOps(prometheus_url, alertmanager_url, folder, processes)
    finally:
        for process in reversed(processes.values()):
            stop_group(process)


def run_ops(
    settings: Settings,
    *,
    prometheus_port: int,
    alertmanager_port: int,
    webhook_url: str | None,
    echo: Callable[[str], None],
) -> None:
    """``analytics-platform ops``: both servers until Ctrl-C or SIGTERM, or until one of them exits."""
    import signal
    from types import FrameType

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Both, explicitly: a parent that ignored or blocked them (both survive exec) would leave Ctrl-C unheard.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    config = OpsConfig.from_settings(
        settings, prometheus_port=prometheus_port, alertmanager_port=alertmanager_port, webhook_url=webhook_url
    )
    try:
        with running_ops(settings, config) as ops:
            echo(f"Prometheus: {ops.prometheus_url}  (alerts: {ops.prometheus_url}/alerts)")
            echo(f"Alertmanager: {ops.alertmanager_url}")
            echo(f"scraping the exporter at {config.exporter_target} and the API at {config.api_target}")
            echo(f"configuration and data: {ops.folder}; Ctrl-C stops both")
            while (exited := ops.exited()) is None:
                time.sleep(1.0)
            raise PlatformError(f"{exited} exited; see {ops.folder / 'logs' / exited}.log")
    except KeyboardInterrupt:
        echo("stopped")
