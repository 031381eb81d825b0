"""DuckDB connections: its extensions, installed from wheels, and read-only access to the published marts."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb

from analytics_platform.exceptions import ConfigError
from analytics_platform.lakehouse.storage import duckdb_secret_sql
from analytics_platform.settings import Settings

# httpfs: reads of an s3:// warehouse (DuckDB's S3 client and its secrets).
EXTENSION_PACKAGES = ("duckdb_extension_avro", "duckdb_extension_iceberg", "duckdb_extension_httpfs")
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
    """Install the iceberg, avro and httpfs extensions from their wheels (DuckDB cannot download them here)."""
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


def configure_object_storage(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Let ``con`` read an ``s3://`` warehouse: load httpfs and create the S3 secret of the ``PLATFORM_S3_*``
    settings (a temporary secret, so on every connection that reads Iceberg tables; nothing for a local one).

    The statement holds the secret key: DuckDB redacts it in ``duckdb_secrets()``, and it is never logged."""
    statement = duckdb_secret_sql(settings)
    if statement is None:
        return
    con.execute("load httpfs")
    try:
        con.execute(statement)
    except duckdb.Error as error:  # its message may quote the statement: never chain it, redact the key
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        message = str(error).replace(secret, "**********") if secret else str(error)
        raise ConfigError(
            f"DuckDB refused the S3 secret made of the PLATFORM_S3_* settings: {message}; check PLATFORM_S3_ENDPOINT, "
            "PLATFORM_S3_REGION and PLATFORM_S3_ACCESS_KEY_ID (docs/scaling.md#object-storage)."
        ) from None


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
