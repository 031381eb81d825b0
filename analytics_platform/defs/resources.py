"""Dagster resources shared by every domain."""

import dagster as dg

from analytics_platform.settings import Settings, get_settings


class PlatformResource(dg.ConfigurableResource):
    """Gives assets and sensors the platform settings, read from the ``PLATFORM_*`` environment when used.

    Reading at use time (not at import) lets one code location serve any environment and lets tests
    point it at a temporary home.
    """

    def settings(self) -> Settings:
        return get_settings()
