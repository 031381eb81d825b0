"""The API's browser pages render in a real browser (headless Chromium) with the internet cut off: Swagger
UI lists the operations at /docs, GraphiQL shows its editors with an example query at /graphql."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import Served, serving_api

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "analytics-platform")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def browse(url: str, tmp_path: Path, screenshot: str) -> str:
    """The page's DOM after its scripts ran, in headless Chromium that can resolve no host but this one."""
    assert CHROMIUM, "headless Chromium is needed (Debian: apt-get install chromium; .ci/run installs it)"
    offline = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9"]
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,900",
        "--virtual-time-budget=15000",
        "--proxy-bypass-list=127.0.0.1",
        *offline,
    ]
    shot = tmp_path / screenshot
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000, "an empty page screenshots small"
    done = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_docs_and_graphiql_render_without_the_internet(served: Served, tmp_path: Path) -> None:
    with serving_api(served.settings, tmp_path / "api.log") as api:
        docs = browse(f"http://127.0.0.1:{api.port}/docs", tmp_path, "docs.png")
        graphiql = browse(f"http://127.0.0.1:{api.port}/graphql", tmp_path, "graphiql.png")
    # Swagger UI built the operations list from /openapi.json: every path shows, replays included.
    assert 'class="swagger-ui' in docs
    for path in ("/v1/metrics/daily_active_users", "/v1/events", "/v1/replays", "/v1/replays/{replay_id}"):
        assert f'data-path="{path}"' in docs, path
    # GraphiQL mounted its editors (the text "Loading..." is replaced) with the example query.
    assert "graphiql-container" in graphiql and "Loading..." not in graphiql
    assert "daily_active_users" in graphiql and "graphiql-editor" in graphiql
