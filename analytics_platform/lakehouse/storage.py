"""Object storage: how pyiceberg and DuckDB reach an ``s3://`` warehouse (AWS S3, MinIO, any S3-compatible store).

One place maps the ``PLATFORM_S3_*`` settings to both readers' configuration, so the writer (pyiceberg) and
every DuckDB that reads the tables agree on endpoint, addressing, credentials and encryption. For a local
(``file://``) warehouse both mappings are empty.

Server-side encryption: pyiceberg 0.12 honours ``s3.server-side-encryption`` and ``s3.sse-kms-key-id`` only in
its ``FsspecFileIO`` (s3fs); its default ``PyArrowFileIO`` has no such option and would silently write
unencrypted objects to a bucket without default encryption. So asking for SSE selects ``FsspecFileIO``.
DuckDB only reads the warehouse: SSE-S3 and SSE-KMS objects decrypt transparently for a reader allowed to
use the key, and the KMS key id is passed to its secret for completeness.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from analytics_platform.exceptions import ConfigError
from analytics_platform.settings import Settings

S3_SCHEMES = ("s3://", "s3a://", "s3n://")
FSSPEC_FILE_IO = "pyiceberg.io.fsspec.FsspecFileIO"
# The name of the DuckDB secret every connection reading an s3:// warehouse gets (temporary: in memory only).
DUCKDB_SECRET_NAME = "platform_warehouse"


def is_object_storage(location: str) -> bool:
    """Whether ``location`` is on S3 (or an S3-compatible store) rather than a local path."""
    return location.startswith(S3_SCHEMES)


def uses_object_storage(settings: Settings) -> bool:
    """Whether the warehouse, or the cold warehouse raw partitions move to, is on object storage."""
    return is_object_storage(settings.warehouse_uri) or is_object_storage(settings.cold_warehouse_uri)


def fileio_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg catalog properties for the S3 FileIO (https://py.iceberg.apache.org/configuration/#s3);
    empty for a local warehouse. Holds the secret key: never log the result."""
    if not uses_object_storage(settings):
        return {}
    properties = {
        "s3.region": settings.s3_region,
        "s3.force-virtual-addressing": str(not settings.s3_path_style_addressing).lower(),
    }
    if settings.s3_endpoint:
        properties["s3.endpoint"] = settings.s3_endpoint.rstrip("/")
    if settings.s3_access_key_id:
        if settings.s3_secret_access_key is None:
            raise ConfigError(
                "PLATFORM_S3_ACCESS_KEY_ID is set without PLATFORM_S3_SECRET_ACCESS_KEY; set both, or neither to "
                "use the AWS credential chain."
            )
        properties["s3.access-key-id"] = settings.s3_access_key_id
        properties["s3.secret-access-key"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_sse != "none":
        properties["py-io-impl"] = FSSPEC_FILE_IO  # the FileIO that sends the SSE headers (see the module doc)
        properties["s3.server-side-encryption"] = settings.s3_sse
        if settings.s3_sse_kms_key_id:
            properties["s3.sse-kms-key-id"] = settings.s3_sse_kms_key_id
    return properties


def duckdb_secret_sql(settings: Settings) -> str | None:
    """The ``CREATE SECRET`` statement that lets DuckDB's httpfs read the warehouse, or None for a local one.

    A temporary secret (DuckDB keeps it in memory, never on disk), so every connection creates it anew: see
    :func:`analytics_platform.warehouse.connections.configure_object_storage`. Holds the secret key: never log it.
    """
    if not uses_object_storage(settings):
        return None
    options = [
        "type s3",
        "provider config",
        f"region {_quote(settings.s3_region)}",
        f"url_style {_quote('path' if settings.s3_path_style_addressing else 'vhost')}",
    ]
    if settings.s3_endpoint:
        endpoint = urlsplit(settings.s3_endpoint)
        if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
            raise ConfigError(
                f"PLATFORM_S3_ENDPOINT={settings.s3_endpoint!r} is not an http(s) URL; set it like http://minio:9000."
            )
        options.append(f"endpoint {_quote(endpoint.netloc + endpoint.path.rstrip('/'))}")
        options.append(f"use_ssl {str(endpoint.scheme == 'https').lower()}")
    if settings.s3_access_key_id and settings.s3_secret_access_key is not None:
        options.append(f"key_id {_quote(settings.s3_access_key_id)}")
        options.append(f"secret {_quote(settings.s3_secret_access_key.get_secret_value())}")
    if settings.s3_sse == "aws:kms" and settings.s3_sse_kms_key_id:
        options.append(f"kms_key_id {_quote(settings.s3_sse_kms_key_id)}")
    return f"create or replace temporary secret {DUCKDB_SECRET_NAME} ({', '.join(options)})"


def _quote(value: str) -> str:
    """A SQL string literal (CREATE SECRET takes no prepared parameters)."""
    return "'" + value.replace("'", "''") + "'"
