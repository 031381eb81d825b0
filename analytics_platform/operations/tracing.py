"""OpenTelemetry traces of an event's path: produced, landed in a micro-batch, built into the marts, served.

The producer records a span per message and puts its W3C trace context in the message's headers
(``traceparent``); the ingest run records a span per micro-batch *linked* to the contexts of the messages
it landed (one batch lands many messages, so they are links, not parents) and stores its own context in
the Iceberg snapshot it commits; a marts build links to the batches whose snapshots it read; the API
records a span per request. Attribute names follow the messaging semantic conventions
(``messaging.system=kafka``, ``messaging.destination.name``); the platform's own are ``analytics_platform.*``,
``analytics_platform.correlation_id`` on every span about particular events.

Where spans go is ``PLATFORM_TRACES_EXPORTER`` (none, console, otlp), read by :func:`setup` the first
time a process traces something; with ``none`` no provider is installed and :func:`tracer` is None, so
the instrumented code skips the work (no headers, no spans). Dagster-free.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from analytics_platform.exceptions import ConfigError
from analytics_platform.settings import Settings

TRACER_NAME = "analytics_platform"
DEFAULT_SERVICE_NAME = "analytics-platform"
OTLP_VERSION = "1.45.1"  # the pinned opentelemetry-sdk's: the exporter must match it
# The SDK keeps at most 128 links per span (OTEL_SPAN_LINK_COUNT_LIMIT): a batch links that many messages.
MAX_LINKS = 128

# Messaging semantic conventions (1.27+).
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_PARTITION = "messaging.destination.partition.id"
MESSAGING_OFFSET = "messaging.kafka.offset"
MESSAGING_BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
# The platform's own.
CORRELATION_ID = "analytics_platform.correlation_id"
EVENT_ID = "analytics_platform.event_id"
EVENT_TYPE = "analytics_platform.event_type"
BATCH_ID = "analytics_platform.batch_id"
BUILD_ID = "analytics_platform.build_id"
BUILD_KIND = "analytics_platform.build_kind"
DAGSTER_RUN_ID = "analytics_platform.dagster_run_id"
REJECTED = "analytics_platform.rejected"  # why the producer sent an event to the dead-letter topic
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_lock = threading.Lock()
_configured = False
_provider: TracerProvider | None = None  # installed by setup() or use_provider()


def span_exporter(kind: str) -> SpanExporter | None:
    """The exporter ``PLATFORM_TRACES_EXPORTER=kind`` names (None for ``none``).

    ``otlp`` sends to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) over
    http/protobuf, or gRPC with ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``; the exporter reads the standard
    ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout, certificates) itself.

    Raises:
        ConfigError: an unknown kind, or ``otlp`` without the ``opentelemetry-exporter-otlp`` package.
    """
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ConfigError(f"PLATFORM_TRACES_EXPORTER={kind!r} is not an exporter; choose none, console or otlp.")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    transport = "grpc" if protocol == "grpc" else "http"
    try:
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter")
    except ImportError as error:
        raise ConfigError(
            f"PLATFORM_TRACES_EXPORTER=otlp needs the OTLP exporter, which is not installed ({error}). Install it "
            f"at the SDK's version, `.venv/bin/pip install opentelemetry-exporter-otlp=={OTLP_VERSION}`, or set "
            "PLATFORM_TRACES_EXPORTER to none or console."
        ) from error
    exporter: SpanExporter = module.OTLPSpanExporter()
    return exporter


def setup(settings: Settings) -> None:
    """Install the tracer provider ``settings`` ask for, once per process (later calls change nothing).

    Called by the instrumented code with its settings, so every entry point (CLI, Dagster run, API)
    traces by the same setting without its own set-up. The provider also becomes OpenTelemetry's global
    one, so other instrumentation in the process joins the same traces.
    """
    global _configured, _provider
    if _configured:
        return
    with _lock:
        if _configured:
            return
        exporter = span_exporter(settings.traces_exporter)
        if exporter is not None:
            service = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
            provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
            # Console output is for reading along, at once; OTLP batches in a thread, off the hot path.
            console = isinstance(exporter, ConsoleSpanExporter)
            provider.add_span_processor(SimpleSpanProcessor(exporter) if console else BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            _provider = provider
        _configured = True


@contextlib.contextmanager
def use_provider(provider: TracerProvider) -> Iterator[None]:
    """Trace to ``provider`` inside the block (tests, or an application embedding the platform's code),
    whatever :func:`setup` installed; OpenTelemetry's global provider is left alone."""
    global _provider
    saved = _provider
    _provider = provider
    try:
        yield
    finally:
        _provider = saved


def tracer() -> Tracer | None:
    """The platform's tracer, or None when nothing would record its spans: the callers then skip the
    work. A global SDK provider installed by an embedding application counts too."""
    if _provider is not None:
        return _provider.get_tracer(TRACER_NAME)
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(TRACER_NAME)


def enabled() -> bool:
    return tracer() is not None


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    current: bool = True,
) -> Iterator[Span]:
    """A span around the block (a no-op one when tracing is off: check ``is_recording()`` before costly
    attributes). An exception is recorded on it and re-raised. ``current=False`` does not make it the
    current span: for blocks that span generator yields (Dagster assets), where the context would be
    detached in another context than it was attached in."""
    active = tracer()
    if active is None:
        yield trace.INVALID_SPAN
        return
    if current:
        with active.start_as_current_span(name, kind=kind, attributes=attributes) as opened:
            yield opened
        return
    opened = active.start_span(name, kind=kind, attributes=attributes)
    try:
        yield opened
    except Exception as error:
        opened.record_exception(error)
        opened.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        raise
    finally:
        opened.end()


Headers = Sequence[tuple[str, str | bytes | None]]


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [
            value.decode(errors="replace") if isinstance(value, bytes) else value
            for name, value in carrier
            if name == key and value is not None
        ]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _HeaderGetter()
_W3C = TraceContextTextMapPropagator()


def inject_headers(span: Span, headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``headers`` plus ``span``'s W3C trace context (``traceparent``, and ``tracestate`` if any).

    Formatted here rather than through ``opentelemetry.propagate`` (a third of the per-message cost on
    the producer's path); it is exactly what the W3C propagator writes."""
    context = span.get_span_context()
    if context.is_valid:
        parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        headers.append((TRACEPARENT, parent.encode()))
        if context.trace_state:
            headers.append((TRACESTATE, context.trace_state.to_header().encode()))
    return headers


def message_link(headers: Headers, attributes: Mapping[str, AttributeValue] | None = None) -> Link | None:
    """A link to the span context a message's headers carry (None if they carry none)."""
    context = trace.get_current_span(_W3C.extract(headers, getter=_GETTER)).get_span_context()
    return Link(context, attributes) if context.is_valid else None


def traceparent(span: Span) -> str | None:
    """``span``'s W3C ``traceparent`` (None for a span that records nothing), e.g. to store beside data."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)


def traceparent_link(value: str | None, attributes: Mapping[str, AttributeValue] | None = None) -> Link | None:
    """A link to the span a stored ``traceparent`` names (None if ``value`` is empty or malformed)."""
    if not value:
        return None
    context = trace.get_current_span(_W3C.extract({TRACEPARENT: value})).get_span_context()
    return Link(context, attributes) if context.is_valid else None


def failed(span: Span, error_type: str, description: str) -> None:
    """Mark ``span`` failed by an error that is not an exception (e.g. a delivery report's)."""
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description))
