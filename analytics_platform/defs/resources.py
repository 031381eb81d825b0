"""Dagster resources shared by every domain."""

import contextlib
from collections.abc import Iterator
from typing import Self

import dagster as dg

from analytics_platform.defs.run_health import run_heartbeat
from analytics_platform.settings import Settings, get_settings


class PlatformResource(dg.ConfigurableResource):
    """Gives assets and sensors the platform settings, read from the ``PLATFORM_*`` environment when used.

    Reading at use time (not at import) lets one code location serve any environment and lets tests
    point it at a temporary home. Every op of the platform uses it, so a run's heartbeat (see
    :mod:`analytics_platform.defs.run_health`) lives exactly as long as the run's resources.
    """

    def settings(self) -> Settings:
        return get_settings()

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Self]:
        run = context.run
        if context.instance is None or run is None:  # a sensor or a schedule: no run to vouch for
            yield self
            return
        with run_heartbeat(context.instance, run.run_id):
            yield self
