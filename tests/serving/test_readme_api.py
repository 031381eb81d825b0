"""The README's API examples, run as a reader would: bash and curl against `analytics-platform serve`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import Served, serving_api

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
CLI = str(Path(sys.executable).parent / "analytics-platform")


def readme_api_block() -> list[str]:
    section = README.read_text().split("## The API", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's API section has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_curl_examples_answer_with_metrics(served: Served, tmp_path: Path) -> None:
    with serving_api(served.settings, tmp_path / "api.log") as api:
        lines = [
            line.replace(".venv/bin/analytics-platform", CLI).replace("127.0.0.1:8000", f"127.0.0.1:{api.port}")
            for line in readme_api_block()
        ]
        assert sum("curl" in line for line in lines) == 6
        # Each curl's answer on a line of its own; --fail-with-body turns an HTTP error into a failed script.
        script = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; echo; }\n' + "\n".join(lines)
        done = subprocess.run(["bash", "-c", script], env=api.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    listing, dau, funnel, behind, journey = (json.loads(line) for line in done.stdout.splitlines() if line.strip())
    assert {metric["name"] for metric in listing["metrics"]} >= {"daily_active_users", "funnel_daily", "sessions"}
    assert dau["rows"] and all(row["activity_date"] >= "2026-11-01" for row in dau["rows"])
    assert dau["as_of"]["raw"] and funnel["metric"] == "funnel_daily" and len(funnel["rows"]) <= 5
    assert all(row["category"] == "books" for row in funnel["rows"])
    assert len(behind["events"]) == 2 and {e["event_type"] for e in behind["events"]} == {"purchase"}
    assert behind["events"][0]["event_at"].startswith("2026-11-02")
    assert "purchase" in {e["event_type"] for e in journey["events"]}
    assert {e["correlation_id"] for e in journey["events"]} == {behind["events"][0]["correlation_id"]}
