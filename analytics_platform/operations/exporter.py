"""``analytics-platform exporter``: the platform's figures on ``/metrics`` from a small HTTP server of its own.

The serving API offers the same ``/metrics``; the exporter is for where no API runs (and what ``make dev``
scrapes with ``make ops``). It only reads, so it can run beside any writer; it answers ``/healthz`` without
reading anything, for liveness probes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import FrameType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

from analytics_platform.operations.metrics import PlatformCollector
from analytics_platform.settings import Settings

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment


def platform_registry(settings: Settings, **options: Any) -> tuple[CollectorRegistry, PlatformCollector]:
    """A registry holding the platform's collector (``options`` go to :class:`PlatformCollector`)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = PlatformCollector(settings, **options)
    registry.register(collector)
    return registry, collector


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight does not keep the process alive on Ctrl-C


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape is noise
        pass


def exporter_app(registry: CollectorRegistry) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"see /metrics\n"]

    return app


def serve_exporter(
    settings: Settings, host: str, port: int, *, cache_s: float = 5.0, echo: Callable[[str], None] = print
) -> None:
    """Serve ``/metrics`` on ``host:port`` until Ctrl-C or SIGTERM."""
    registry, collector = platform_registry(settings, cache_s=cache_s)
    ProcessCollector(registry=registry)  # the exporter's own memory and CPU
    server = make_server(host, port, exporter_app(registry), server_class=_Server, handler_class=_QuietHandler)

    def stop(signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()  # returns once serve_forever has

    # Both signals, explicitly: Dagster (read on scrape) points SIGTERM at whatever handles SIGINT, which
    # is "ignore" in a process started in the background.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    echo(f"serving the platform's metrics on http://{host}:{server.server_port}/metrics; Ctrl-C stops it")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        collector.close()
    echo("stopped")
