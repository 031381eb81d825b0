"""A span per API request (docs/operations.md#tracing), added to the app only when tracing is on.

A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware`` (which costs a task and a stream
per request) or the FastAPI instrumentation (not a dependency). The span continues the caller's trace
when the request carries a ``traceparent`` header, is named by the matched route (``GET /v1/events``),
and carries the metric and the correlation id the request names.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics_platform.operations import tracing

METRIC = "analytics_platform.metric"


class RequestSpans:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        active = tracing.tracer()
        if scope["type"] != "http" or active is None:
            await self.app(scope, receive, send)
            return
        method = str(scope["method"])
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
        attributes: dict[str, Any] = {"http.request.method": method, "url.path": str(scope["path"])}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if correlation_ids := query.get("correlation_id"):
            attributes[tracing.CORRELATION_ID] = correlation_ids[0]
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with active.start_as_current_span(
            method, context=propagate.extract(headers), kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            try:
                await self.app(scope, receive, sending)
            finally:
                # Set by the router once it matched: the route's template and the path's parameters.
                if (route := getattr(scope.get("route"), "path", None)) is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if (metric := scope.get("path_params", {}).get("metric")) is not None:
                    span.set_attribute(METRIC, str(metric))
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
