"""``analytics-platform bi``: Apache Superset on the published marts with the repo's dashboards (docs/bi.md)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from analytics_platform.exceptions import SupersetError
from analytics_platform.settings import Settings, get_settings

bi_app = typer.Typer(
    help="Apache Superset on the published marts, with the dashboards kept as YAML in the repo (docs/bi.md).",
    no_args_is_help=True,
)


def _echo(message: str) -> None:
    typer.echo(message)


def _settings() -> Settings:
    """The settings, pointed at the demo's marts when this home has none but `make demo` left some."""
    from analytics_platform.warehouse.connections import published_link

    settings = get_settings()
    demo = settings.home / "demo"
    if not published_link(settings).exists() and settings.duckdb_dir is None:
        demo_settings = settings.model_copy(update={"home": demo})
        if published_link(demo_settings).exists():
            _echo(f"no marts published in {settings.home}; using those `make demo` left in {demo}")
            return demo_settings
    return settings


@bi_app.command("start")
def start(
    port: Annotated[int | None, typer.Option(help="Port (default PLATFORM_SUPERSET_PORT, 8088).")] = None,
    workers: Annotated[int, typer.Option(help="gunicorn worker processes (~350 MB each).")] = 2,
) -> None:
    """Install Superset on first use, import the dashboards, serve them on 127.0.0.1 until Ctrl-C or SIGTERM (what
    `make bi` runs)."""
    from analytics_platform.bi import superset
    from analytics_platform.local.processes import stop_group

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # gunicorn runs in a process group of its own: stop it here on SIGTERM too, and on SIGINT even if this
    # process was started with SIGINT ignored (in the background of a script).
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    settings = _settings()
    port = port or settings.superset_port
    if superset.answers(port):
        raise SupersetError(f"something already answers on 127.0.0.1:{port}; stop it or pass --port")
    try:
        home = superset.prepare(settings, _echo)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    _echo(f"starting Superset on 127.0.0.1:{port} (~15 s)")
    server = superset.start(home, port, workers=workers)
    try:
        superset.wait_until_healthy(server, home, port)
        _echo(
            f"Superset: http://127.0.0.1:{port}/superset/dashboard/product/\n"
            f"operations: http://127.0.0.1:{port}/superset/dashboard/operations/\n"
            f"login: {superset.ADMIN_USER} / {superset.admin_password(settings)}\n"
            f"reading {home.warehouse} (each query reads the build published then); logs in {home.logs}\n"
            "Ctrl-C stops it"
        )
        code = server.wait()
        raise SupersetError(f"Superset exited with {code}; see {home.logs / 'gunicorn.log'}")
    except KeyboardInterrupt:
        _echo("stopping Superset")
    finally:
        stop_group(server)


@bi_app.command("install")
def install() -> None:
    """Only install Superset's venv (PLATFORM_SUPERSET_VENV, default <home>/superset/venv) from the pins."""
    from analytics_platform.bi import superset

    superset.install(_settings().superset_venv_path, _echo)


@bi_app.command("export")
def export(
    target: Annotated[
        Path | None,
        typer.Option(help="Folder to write the YAML into (default: analytics_platform/bi/dashboards)."),
    ] = None,
) -> None:
    """Write the dashboards as Superset holds them (edited in the UI) back into YAML files (git diff them)."""
    from analytics_platform.bi import superset

    home = superset.SupersetHome.from_settings(_settings())
    superset.export_dashboards(home, target or superset.DASHBOARDS_DIR, _echo)
