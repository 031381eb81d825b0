"""Every error the platform raises on purpose, split by whether retrying can help.

A :class:`TransientError` (broker briefly unreachable, a concurrent commit, a database restarting)
may succeed on retry, so Dagster retries it with backoff; a :class:`TerminalError` (bad
configuration, a Kafka log that no longer matches the offsets stored in Iceberg, an incompatible
schema) fails the same way until a person acts, so it is never retried and its message says what
to do. :func:`analytics_platform.defs.retries.as_terminal` says which other libraries' errors are terminal.
"""


class PlatformError(Exception):
    """Base class of every error the platform raises on purpose."""


class TerminalError(PlatformError):
    """Retrying will not help; the message names the fix."""


class TransientError(PlatformError):
    """A retry may succeed (the broker is starting, another writer committed first)."""


class ConfigError(TerminalError, ValueError):
    """A setting is missing or invalid; the message names the setting and the fix."""


class BrokerError(TerminalError):
    """The embedded broker cannot be started or stopped, or a topic is missing."""


class BrokerUnavailableError(TransientError):
    """Kafka cannot be reached right now (it may be starting or restarting)."""


class DeliveryError(TransientError):
    """Some produced messages were not acknowledged by the broker."""


class OffsetMismatchError(TerminalError):
    """The Kafka log no longer holds the offsets stored in Iceberg (e.g. the memory-only broker restarted)."""


class DagsterUnavailableError(TransientError):
    """The Dagster webserver, which launches runs for the API, does not answer."""


class ConcurrentIngestError(TransientError):
    """Another writer landed a batch for the same topic first; re-plan from the offsets now stored."""


class SchemaRegistryError(TerminalError):
    """A schema file is invalid or a version breaks its compatibility mode; the message names the fix."""


class UnknownSchemaVersion(TerminalError, KeyError):
    """An event claims a schema version the registry does not hold."""


class TableNotFoundError(TerminalError):
    """A table that is only read was never created (nothing was ingested yet)."""


class ModelBuildError(TerminalError):
    """dbt failed (a model's SQL or a data test); the published marts are unchanged."""


class QualityGateError(TerminalError):
    """A blocking quality check on raw data failed, so the models downstream were not built."""


class WarehouseFullError(TerminalError):
    """The disk holding the DuckDB builds is full; the published marts are unchanged."""


class ServingError(TerminalError):
    """A request to the serving API that cannot be answered as asked; the message says what to change."""


class InvalidRequestError(ServingError):
    """A request (to the API, the CLI or in a run's config) is malformed or asks for what does not exist:
    a filter, limit or cursor out of range, an offset range the log does not hold, an expired snapshot."""


class NotFoundError(InvalidRequestError):
    """The request names something that does not exist (the API answers 404)."""


class UnknownMetricError(NotFoundError):
    """The API has no metric of that name."""


class UnknownReplayError(NotFoundError):
    """No replay has that id."""


class AccessDeniedError(ServingError):
    """The API key is missing, unknown, or lacks the role or countries a request needs."""

    def __init__(self, message: str, *, authenticated: bool) -> None:
        super().__init__(message)
        self.authenticated = authenticated


class BuildGoneError(ServingError):
    """A pagination cursor refers to a marts build that is no longer kept; start again without it."""


class NotPublishedError(ServingError):
    """No marts build has been published yet (nothing to answer from)."""


class SupersetError(TerminalError):
    """Superset could not be installed, initialised, fed its dashboards or started; the message says why."""


class AlertDeliveryError(TransientError):
    """The alert webhook (PLATFORM_ALERT_WEBHOOK_URL) did not take an alert; the next sensor tick sends it again."""


class SmokeTestError(TerminalError):
    """``analytics-platform smoke``: the sample event did not make a hop within the deadline; the message names it."""
