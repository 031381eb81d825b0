"""Errors the platform raises, split by whether retrying can help.

A :class:`TransientError` (broker briefly unreachable, a concurrent commit) may succeed on retry;
a :class:`TerminalError` (bad configuration, a Kafka log that no longer matches the offsets stored in
Iceberg) will fail the same way until a person acts, so its message says what to do.
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
    """The embedded broker cannot be started, stopped or reached."""


class OffsetMismatchError(TerminalError):
    """The Kafka log no longer holds the offsets stored in Iceberg (e.g. the memory-only broker restarted)."""


class QualityGateError(TerminalError):
    """A blocking quality check on raw data failed, so the models downstream were not built."""


class ConcurrentIngestError(TransientError):
    """Another writer landed a batch for the same topic first; re-plan from the offsets now stored."""
