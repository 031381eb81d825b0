"""Apache Superset over the published marts: its own venv, its state under the platform home, dashboards as code.

Superset 6.1 needs SQLAlchemy 1.4 and the platform 2.x, so Superset lives in a venv of its own
(``PLATFORM_SUPERSET_VENV``, default ``<home>/superset/venv``) installed from the pinned
``superset-requirements.txt`` and ``superset-constraints.txt``, and the platform only ever runs its
executables. Everything else Superset writes stays in ``<home>/superset``: the SQLite metadata database,
the generated config, the secret key and the admin password (both created once, mode 0600), the bundle
built for the last import and the logs.

The dashboards are the YAML files in ``dashboards/`` (Superset's export format). Every start builds them
into an import bundle with the real warehouse path and imports them by UUID, so an edited YAML file
replaces what Superset holds and a second import never duplicates anything. Superset reads the published
link ``<duckdb dir>/warehouse.duckdb`` read-only and opens a new connection per query (its data cache is
a NullCache), so every chart shows the latest published build with no reload.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analytics_platform.exceptions import SupersetError
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import published_link

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "superset-requirements.txt"
CONSTRAINTS = HERE / "superset-constraints.txt"
DASHBOARDS_DIR = HERE / "dashboards"
# Runs inside Superset's venv (it imports superset), never in the platform's; with `python -I`, so that this
# folder (holding superset.py) is not on sys.path and `import superset` finds Superset.
APP_SCRIPT = HERE / "superset_app.py"
ADMIN_USER = "admin"
# A bundle's files sit under one root folder in the zip: Superset's importer strips the first path part.
BUNDLE_ROOT = "bundle"
WAREHOUSE_PLACEHOLDER = "${WAREHOUSE}"

Echo = Callable[[str], None]


def superset_version() -> str:
    """The Superset release pinned in ``superset-requirements.txt``."""
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("apache-superset=="):
            return line.split("==", 1)[1].strip()
    raise SupersetError(f"{REQUIREMENTS} pins no apache-superset==<version>")


@dataclass(frozen=True)
class SupersetHome:
    """Where Superset's venv and state live for one platform home."""

    state: Path
    venv: Path
    warehouse: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> SupersetHome:
        return cls(
            state=settings.superset_home_path, venv=settings.superset_venv_path, warehouse=published_link(settings)
        )

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def config(self) -> Path:
        return self.state / "superset_config.py"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def env(self) -> dict[str, str]:
        """The environment of every Superset process: its config, its home, its venv first on PATH."""
        return os.environ | {
            "SUPERSET_CONFIG_PATH": str(self.config),
            "SUPERSET_HOME": str(self.state),
            "FLASK_APP": "superset",
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            # Superset's frontend would report to Scarf; the config's CSP blocks it too.
            "SCARF_ANALYTICS": "false",
        }


# ---------------------------------------------------------------------------------------------------- install


def _pins_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes() + CONSTRAINTS.read_bytes()).hexdigest()[:12]


def is_installed(venv: Path) -> bool:
    """True when ``venv`` was installed from the current pin files (a marker keyed by their digest)."""
    return (venv / f".installed-{_pins_digest()}").exists()


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def install(venv: Path, echo: Echo) -> None:
    """Create Superset's venv and install the pinned packages, unless they are installed already.

    uv (installed with the platform) takes ~1 min, pip ~3 min; the venv takes ~700 MB. An install that
    stops halfway leaves no marker, so the next call installs again.
    """
    if is_installed(venv):
        return
    started = time.monotonic()
    echo(f"installing Superset {superset_version()} into {venv} (~1 min with uv, ~700 MB)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    uv = _uv()
    pins = ["-r", str(REQUIREMENTS), "-c", str(CONSTRAINTS)]
    if uv:
        if not python.exists():
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], "create Superset's venv")
        _run([uv, "pip", "install", "--quiet", "--python", str(python), *pins], "install Superset's packages")
    else:
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], "create Superset's venv")
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins], "pip install")
    for stale in venv.glob(".installed-*"):
        stale.unlink()
    (venv / f".installed-{_pins_digest()}").touch()
    echo(f"installed Superset in {time.monotonic() - started:.0f} s")


def _run(command: list[str], what: str, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run ``command``; on failure raise with its output's tail (and where the whole log is)."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as file:
            file.write(f"$ {' '.join(command)}\n{output}\n")
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        where = f" (full output in {log})" if log else ""
        raise SupersetError(f"could not {what}: `{' '.join(command)}` exited {result.returncode}{where}:\n{tail}")
    return result.stdout


# ---------------------------------------------------------------------------------------------- config, init


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    """Read a secret from ``path``, creating it with ``make()`` first (mode 0600, never rewritten)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(make() + "\n")
    return path.read_text().strip()


def admin_password(settings: Settings) -> str:
    """``PLATFORM_SUPERSET_ADMIN_PASSWORD``, else the one generated once into ``<home>/superset/admin-password``."""
    if settings.superset_admin_password:
        return settings.superset_admin_password
    return _secret_file(settings.superset_home_path / "admin-password", lambda: secrets.token_urlsafe(12))


CONFIG_TEMPLATE = '''\
"""Superset's config, written by analytics_platform/bi/superset.py on every start: edit that module instead."""

from pathlib import Path

# Signs session cookies and encrypts database passwords in the metadata DB: created once, mode 0600.
SECRET_KEY = Path({secret!r}).read_text().strip()
DATA_DIR = {state!r}
SQLALCHEMY_DATABASE_URI = "sqlite:///" + {metadata!r} + "?check_same_thread=false"

# One process per worker, nothing else to run: no Celery, Redis, thumbnails or alerts.
FEATURE_FLAGS = {{
    "THUMBNAILS": False,
    "ALERT_REPORTS": False,
    "GLOBAL_ASYNC_QUERIES": False,
    "DASHBOARD_RBAC": False,
    "EMBEDDED_SUPERSET": False,
}}
CELERY_CONFIG = None
RESULTS_BACKEND = None
# No data cache: every chart query reads the build published now (a new connection per query).
CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
DATA_CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
FILTER_STATE_CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
EXPLORE_FORM_DATA_CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
RATELIMIT_ENABLED = False
ROW_LIMIT = 50000
SQLLAB_ASYNC_TIME_LIMIT_SEC = 60
SUPERSET_WEBSERVER_TIMEOUT = 120

# No outside calls: the Content-Security-Policy allows this server only (Superset's default also allows
# the Scarf telemetry pixel, map tiles and Google fonts).
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {{
    "content_security_policy": {{
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    }},
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}}
THEME_FONT_URL_ALLOWED_DOMAINS: list[str] = []

# The warehouse is read-only: no uploads into it.
CSV_EXTENSIONS: set[str] = set()
EXCEL_EXTENSIONS: set[str] = set()
COLUMNAR_EXTENSIONS: set[str] = set()
'''


def write_config(home: SupersetHome) -> None:
    """Write Superset's config into its home (the secret key is created once and only referenced)."""
    secret = home.state / "secret-key"
    _secret_file(secret, lambda: secrets.token_urlsafe(48))
    home.config.write_text(
        CONFIG_TEMPLATE.format(secret=str(secret), state=str(home.state), metadata=str(home.state / "superset.db"))
    )


def initialize(home: SupersetHome, echo: Echo) -> None:
    """Create or migrate the metadata DB and Superset's roles, once per Superset version (~35 s)."""
    marker = home.state / f".initialized-{superset_version()}"
    if marker.exists():
        return
    started = time.monotonic()
    echo(f"initializing Superset's metadata DB in {home.state} (~35 s, once per Superset version)")
    superset = str(home.venv / "bin" / "superset")
    log = home.logs / "init.log"
    _run([superset, "db", "upgrade"], "migrate Superset's metadata DB", env=home.env(), log=log)
    _run([superset, "init"], "create Superset's roles and permissions", env=home.env(), log=log)
    marker.touch()
    echo(f"initialized in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------------------------------------------- bundle


def _bundle_files(source: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(source.rglob("*.yaml")):
        yield path.relative_to(source), yaml.safe_load(path.read_text()) or {}


def build_bundle(source: Path, warehouse: Path) -> bytes:
    """The import zip of the YAML in ``source``: ``${WAREHOUSE}`` replaced by the published link's absolute
    path, and each chart's ``query_context`` mapping serialised to the JSON string Superset stores.

    Checks the references between files, so a typo fails here with the file's name, not deep in the importer.
    """
    files: dict[Path, dict[str, Any]] = {}
    for relative, _ in _bundle_files(source):
        # A plain replace, not string.Template: "$" is common in YAML (a d3 currency format, "$,.2f").
        text = (source / relative).read_text().replace(WAREHOUSE_PLACEHOLDER, str(warehouse.absolute()))
        document = yaml.safe_load(text) or {}
        if isinstance(document.get("query_context"), dict):
            document["query_context"] = json.dumps(document["query_context"])
        files[relative] = document
    _check_references(source, files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for relative, document in files.items():
            bundle.writestr(f"{BUNDLE_ROOT}/{relative.as_posix()}", yaml.safe_dump(document, sort_keys=False))
    return buffer.getvalue()


def _check_references(source: Path, files: dict[Path, dict[str, Any]]) -> None:
    def uuids(folder: str) -> set[str]:
        return {str(doc["uuid"]) for path, doc in files.items() if path.parts[0] == folder}

    databases, datasets, charts = uuids("databases"), uuids("datasets"), uuids("charts")
    problems = []
    for path, doc in files.items():
        kind = path.parts[0]
        if kind == "datasets" and str(doc.get("database_uuid")) not in databases:
            problems.append(f"{path}: database_uuid {doc.get('database_uuid')} is no file in databases/")
        if kind == "charts" and str(doc.get("dataset_uuid")) not in datasets:
            problems.append(f"{path}: dataset_uuid {doc.get('dataset_uuid')} is no file in datasets/")
        if kind == "dashboards":
            for node in (doc.get("position") or {}).values():
                if isinstance(node, dict) and node.get("type") == "CHART":
                    chart = str((node.get("meta") or {}).get("uuid"))
                    if chart not in charts:
                        problems.append(f"{path}: {node.get('id')} shows chart {chart}, which is no file in charts/")
    if "metadata.yaml" not in {path.as_posix() for path in files}:
        problems.append("metadata.yaml is missing")
    if problems:
        raise SupersetError(f"the dashboards in {source} do not fit together:\n" + "\n".join(problems))


def import_dashboards(home: SupersetHome, settings: Settings, echo: Echo, source: Path = DASHBOARDS_DIR) -> None:
    """Build the bundle and import it by UUID (updating what exists), and set the admin's password."""
    started = time.monotonic()
    bundle = home.state / "bundle.zip"
    bundle.write_bytes(build_bundle(source, home.warehouse))
    env = home.env() | {"SUPERSET_ADMIN_PASSWORD": admin_password(settings)}
    output = _run(
        [str(home.python), "-I", str(APP_SCRIPT), "prepare", str(bundle), ADMIN_USER],
        "import the dashboards",
        env=env,
        log=home.logs / "import.log",
    )
    echo(f"{output.strip().splitlines()[-1] if output.strip() else 'imported'} in {time.monotonic() - started:.0f} s")


def export_dashboards(home: SupersetHome, target: Path, echo: Echo) -> list[Path]:
    """Export every dashboard from Superset back into YAML files under ``target`` (the repo's dashboards).

    Files keep their names when their UUID is already in ``target`` (a small diff to review), the warehouse
    path goes back to ``${WAREHOUSE}`` and each ``query_context`` back to a YAML mapping.
    """
    exported = home.state / "export.zip"
    _run(
        [str(home.python), "-I", str(APP_SCRIPT), "export", str(exported), ADMIN_USER],
        "export the dashboards",
        env=home.env(),
        log=home.logs / "export.log",
    )
    known = {str(doc.get("uuid")): target / relative for relative, doc in _bundle_files(target)}
    written = []
    with zipfile.ZipFile(exported) as bundle:
        for name in bundle.namelist():
            relative = Path(*Path(name).parts[1:])
            if relative.suffix != ".yaml":
                continue
            text = bundle.read(name).decode().replace(str(home.warehouse.absolute()), WAREHOUSE_PLACEHOLDER)
            document = yaml.safe_load(text) or {}
            _tidy_chart(document)
            path = known.get(str(document.get("uuid")), target / relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120))
            written.append(path)
    echo(f"exported {len(written)} files into {target}; review them with `git diff {target}`")
    return written


def _tidy_chart(document: dict[str, Any]) -> None:
    """Drop from an exported chart what the importer sets anyway (this instance's dataset id, the form data
    copied into the query context), and make its query context a YAML mapping again, so a diff shows edits."""
    if "viz_type" not in document:
        return
    (document.get("params") or {}).pop("datasource", None)
    context = document.get("query_context")
    if isinstance(context, str) and context:
        context = json.loads(context)
    if isinstance(context, dict):
        context.pop("form_data", None)
        context["datasource"] = {"id": 0, "type": "table"}
        document["query_context"] = context


# ----------------------------------------------------------------------------------------------------- serve


def health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health"


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(health_url(port), timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def prepare(settings: Settings, echo: Echo) -> SupersetHome:
    """Everything before the server starts: install, config, init, import. Idempotent; run on every start."""
    home = SupersetHome.from_settings(settings)
    if not home.warehouse.exists():
        raise SupersetError(
            f"no marts published at {home.warehouse}: run `make demo` (then PLATFORM_HOME=.platform/demo), "
            "`analytics-platform build` or `make dev` first, or point PLATFORM_HOME at a home that has them"
        )
    home.state.mkdir(parents=True, exist_ok=True)
    install(home.venv, echo)
    write_config(home)
    initialize(home, echo)
    import_dashboards(home, settings, echo)
    return home


def start(home: SupersetHome, port: int, *, workers: int = 2) -> subprocess.Popen[bytes]:
    """Start gunicorn serving Superset on 127.0.0.1:``port`` in its own process group (stop the group)."""
    from analytics_platform.local.processes import spawn

    command = [
        str(home.venv / "bin" / "gunicorn"),
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--timeout",
        "120",
        "--bind",
        f"127.0.0.1:{port}",
        # Superset's dashboard URLs carry the whole form data.
        "--limit-request-line",
        "0",
        "--limit-request-field_size",
        "0",
        "--access-logfile",
        str(home.logs / "access.log"),
        "superset.app:create_app()",
    ]
    return spawn(command, home.logs / "gunicorn.log", env=home.env())


def wait_until_healthy(process: subprocess.Popen[bytes], home: SupersetHome, port: int, timeout_s: float = 180) -> None:
    """Wait for ``/health`` to answer 200; fail with the log's tail if the server exits or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers(port):
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    log = home.logs / "gunicorn.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""
    state = f"exited with {process.returncode}" if process.poll() is not None else f"no answer in {timeout_s:.0f} s"
    raise SupersetError(
        f"Superset did not start on 127.0.0.1:{port} ({state}; is the port taken? pass --port). {log}:\n{tail}"
    )
