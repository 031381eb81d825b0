"""The serving API: ``create_app(settings)`` for uvicorn, tests and ``analytics-platform serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from analytics_platform.exceptions import (
    AccessDeniedError,
    BrokerError,
    BuildGoneError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    NotPublishedError,
    TransientError,
)
from analytics_platform.operations import tracing
from analytics_platform.operations.exporter import platform_registry
from analytics_platform.serving import cursors
from analytics_platform.serving.access import KeyStore
from analytics_platform.serving.api import events, metrics, replays
from analytics_platform.serving.api.deps import Services
from analytics_platform.serving.api.graphql import graphql_router
from analytics_platform.serving.api.pages import add_docs_page
from analytics_platform.serving.api.spans import RequestSpans
from analytics_platform.serving.events import lake_connection
from analytics_platform.serving.published import PublishedBuilds
from analytics_platform.serving.replays import webserver_launcher
from analytics_platform.settings import Settings, get_settings

DESCRIPTION = """Metrics of the analytics lakehouse, read from the published marts build.

Authenticate with an API key (`Authorization: Bearer <key>` or `X-API-Key`); create one with
`analytics-platform api-key create NAME --role viewer|analyst|operator [--countries DE,FR]`. Every answer
says what it reflects (`as_of`) and how old its newest event is (`X-Data-Freshness-Seconds`)."""


def create_app(settings: Settings) -> FastAPI:
    state = Services(
        settings=settings,
        builds=PublishedBuilds(settings, keep_s=settings.api_build_keep_s),
        keys=KeyStore(settings.api_keys_path),
        cursor_secret=cursors.load_secret(settings.api_secret_path),
        lake=lake_connection(settings),
        launch_replay=webserver_launcher(settings),
    )
    # The platform's figures for Prometheus (docs/operations.md#metrics), read from the sources on scrape.
    registry, collector = platform_registry(settings, builds=state.builds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        collector.close()
        state.builds.close()
        state.lake.close()

    app = FastAPI(title="analytics-platform", version="1", description=DESCRIPTION, lifespan=lifespan, docs_url=None)
    add_docs_page(app)
    tracing.setup(settings)
    if tracing.enabled():  # off, requests do not pass through it at all
        app.add_middleware(RequestSpans)
    app.state.services = state
    app.include_router(metrics.router)
    app.include_router(events.router)
    app.include_router(events.rows_router)
    app.include_router(replays.router)
    app.include_router(graphql_router(), tags=["graphql"], include_in_schema=False)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers (no key needed)."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def prometheus_metrics() -> Response:
        """The platform's metrics in Prometheus's text format (no key needed, like /healthz)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def problem(status: int, error: Exception, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, error: RequestValidationError) -> JSONResponse:
        """What FastAPI's validation found, as one sentence per problem naming where (the API's 422 shape)."""
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'] if part not in ('body', 'query', 'path'))}: "
            f"{problem['msg'].removeprefix('Value error, ')}"
            for problem in error.errors()
        ]
        return problem(422, InvalidRequestError("; ".join(problems) or "malformed request"))

    @app.exception_handler(InvalidRequestError)
    async def invalid(request: Request, error: InvalidRequestError) -> JSONResponse:
        return problem(404 if isinstance(error, NotFoundError) else 422, error)

    @app.exception_handler(AccessDeniedError)
    async def denied(request: Request, error: AccessDeniedError) -> JSONResponse:
        if error.authenticated:
            return problem(403, error)
        return problem(401, error, {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(BuildGoneError)
    async def gone(request: Request, error: BuildGoneError) -> JSONResponse:
        return problem(409, error)

    @app.exception_handler(NotPublishedError)
    async def not_published(request: Request, error: NotPublishedError) -> JSONResponse:
        return problem(503, error, {"Retry-After": "30"})

    @app.exception_handler(TransientError)
    async def unavailable(request: Request, error: TransientError) -> JSONResponse:
        """Something the API depends on (Dagster's webserver, Kafka, the catalog) did not answer: retry."""
        return problem(503, error, {"Retry-After": "30"})

    @app.exception_handler(BrokerError)
    async def broker_error(request: Request, error: BrokerError) -> JSONResponse:
        return problem(503, error)

    @app.exception_handler(ConfigError)
    async def misconfigured(request: Request, error: ConfigError) -> JSONResponse:
        return problem(503, error)

    return app


def app_from_environment() -> FastAPI:
    """The app for ``uvicorn --factory`` (``analytics-platform serve``): settings from PLATFORM_* variables."""
    return create_app(get_settings())
