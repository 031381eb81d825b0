"""DuckDB connections: its extensions, installed from wheels, and read-only access to the published marts."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb

from analytics_platform.settings import Settings

EXTENSION_PACKAGES = ("duckdb_extension_avro", "duckdb_extension_iceberg")
PUBLISHED_NAME = "warehouse.duckdb"
# Every build file has this name, in a folder of its own (see builds.prepare_build).
BUILD_FILE = "warehouse.duckdb"


def extension_directory(settings: Settings) -> Path:
    return settings.duckdb_path / "extensions"


def duckdb_config(settings: Settings) -> dict[str, str | bool | int | float | list[str]]:
    return {
        "extension_directory": str(extension_directory(settings)),
        "autoinstall_known_extensions": "false",
    }


def install_extensions(settings: Settings) -> None:
    """Install the iceberg and avro extensions from their wheels (DuckDB cannot download them here)."""
    directory = extension_directory(settings)
    directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config=duckdb_config(settings))
    try:
        installed = {
            name for (name,) in con.execute("select extension_name from duckdb_extensions() where installed").fetchall()
        }
        for package in EXTENSION_PACKAGES:
            name = package.removeprefix("duckdb_extension_")
            if name in installed:
                continue
            files = list(Path(str(resources.files(package))).rglob("*.duckdb_extension"))
            if len(files) != 1:
                raise RuntimeError(
                    f"expected one extension file in the {package} wheel, found {files}; "
                    f"reinstall it at DuckDB's version {duckdb.__version__}."
                )
            con.execute(f"INSTALL '{files[0]}'")
    finally:
        con.close()


def published_link(settings: Settings) -> Path:
    return settings.duckdb_path / PUBLISHED_NAME


def current_build(settings: Settings) -> Path | None:
    """The published build file, or None before the first successful build."""
    link = published_link(settings)
    return link.resolve() if link.exists() else None


def connect_marts(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published marts (what the query API and BI tools use)."""
    build = current_build(settings)
    if build is None:
        raise FileNotFoundError(
            f"no marts published yet in {settings.duckdb_path}; run "
            "`analytics-platform build` (or wait for the first automatic build)."
        )
    return duckdb.connect(str(build), read_only=True, config=duckdb_config(settings))
