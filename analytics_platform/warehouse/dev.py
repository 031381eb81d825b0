"""The analytics engineer's dbt target: a DuckDB file of one's own whose ``raw`` views read the raw
Iceberg tables' current snapshots, so ``dbt build``, ``show``, ``test`` and ``docs generate`` run straight
from ``dbt_project/`` (target ``dev`` in its ``profiles.yml``; see docs/dbt-development.md).

dbt-duckdb loads :class:`Plugin` in every dbt process that uses the target and calls it just before it
opens the file, so every command sees what had landed when it started:

- on first use, the file starts as a copy of the published build when there is one, so ``dbt build -s
  my_model`` finds everything upstream of ``my_model`` already built (what ``--defer`` would give, with
  no state manifest to keep current); without one, ``dbt build`` builds everything from raw;
- every time, its ``raw`` views are pinned to the raw tables' current snapshots
  (:func:`~analytics_platform.warehouse.builds.pin_raw_views`, as a platform build does once at its start).

The published marts are only ever read (copied): the dev file must lie outside the builds, which
:func:`prepare_dev_warehouse` checks. Dagster-free, and cheap: a pin reads table metadata, not data.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.events.logging import AdapterLogger
from duckdb import DuckDBPyConnection

from analytics_platform.exceptions import ConfigError
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.settings import Settings
from analytics_platform.warehouse.builds import pin_raw_views
from analytics_platform.warehouse.connections import (
    BUILD_FILE,
    configure_object_storage,
    current_build,
    extension_directory,
    install_extensions,
    published_link,
)

logger = AdapterLogger("analytics_platform")


def prepare_dev_warehouse(settings: Settings, path: Path) -> Path | None:
    """Make ``path`` ready for a dbt command: created on first use (a copy of the published build, if
    any), its ``raw`` views pinned to the raw tables' current snapshots. Returns the build it was copied
    from, or None when it existed already or nothing was published yet.

    A copy is taken once: delete the file to start again from the latest published build. Raises
    ConfigError if ``path`` is the published marts or one of the builds, which this must never write.
    """
    path = path.expanduser().absolute()
    _check_outside_the_builds(settings, path)
    install_extensions(settings)
    copied_from = None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        published = current_build(settings)
        if published is not None:
            if path.name != BUILD_FILE:
                raise ConfigError(
                    f"the dev target's file {path} must be named {BUILD_FILE}, like the published build it "
                    "starts as a copy of (DuckDB names the catalog after the file, and the build's views refer "
                    "to it by that name); fix `path` of the dev target in dbt_project/profiles.yml"
                )
            # Copied under a temporary name, then renamed: an interrupted copy never looks like a dev file.
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            try:
                shutil.copyfile(published, partial)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            copied_from = published
    pin_raw_views(settings, load_catalog(settings), path)
    return copied_from


def _check_outside_the_builds(settings: Settings, path: Path) -> None:
    builds = settings.duckdb_path / "builds"
    published = published_link(settings)
    resolved = path.resolve()
    if path == published or resolved == published.resolve() or resolved.is_relative_to(builds.resolve()):
        raise ConfigError(
            f"the dev target's file {path} is the published marts or one of their builds ({builds}), which "
            "dbt must not write outside the platform's builds; point the dev target's `path` in "
            "dbt_project/profiles.yml elsewhere (its default is <home>/duckdb/dev/warehouse.duckdb)"
        )


class Plugin(BasePlugin):
    """The dbt-duckdb plugin of the ``dev`` target. Its one setting, ``home``, is the platform home whose
    catalog and published marts it reads (the profile passes PLATFORM_HOME, or the repository's
    ``.platform``); every other setting comes from the ``PLATFORM_*`` environment, as everywhere."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        home = plugin_config.get("home")
        self.settings = Settings(home=Path(home)) if home else Settings()

    def update_connection_config(self, creds: DuckDBCredentials, config: dict[str, Any]) -> None:
        """Called before dbt opens the file: prepare it, and load extensions from where they were installed."""
        path = Path(creds.path)
        copied_from = prepare_dev_warehouse(self.settings, path)
        if copied_from is not None:
            logger.info(f"dev target: created {path} as a copy of the published build {copied_from}")
        logger.info(f"dev target: {path}, raw views at the current snapshots of platform home {self.settings.home}")
        config["extension_directory"] = str(extension_directory(self.settings))

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        """An ``s3://`` warehouse: the S3 secret the ``raw`` views need, on every connection dbt opens."""
        configure_object_storage(conn, self.settings)
