"""The Iceberg SQL catalog every component opens: SQLite in the platform home, or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from pyiceberg.catalog import Catalog
from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog
from sqlalchemy.exc import IntegrityError, ProgrammingError

from analytics_platform.lakehouse.storage import fileio_properties
from analytics_platform.settings import Settings

CATALOG_NAME = "analytics_platform"


def load_catalog(settings: Settings) -> Catalog:
    """The Iceberg SQL catalog (SQLite by default, PostgreSQL via PLATFORM_CATALOG_URI).

    An ``s3://`` warehouse gets the S3 FileIO properties of the ``PLATFORM_S3_*`` settings (see
    :mod:`analytics_platform.lakehouse.storage`). Further catalog properties come from pyiceberg's own
    environment variables, e.g. ``PYICEBERG_CATALOG__ANALYTICS_PLATFORM__S3__PROXY_URI``.

    The catalog's SQLAlchemy pool checks a connection before lending it (``pool_pre_ping``): after
    PostgreSQL restarts or fails over, every pooled connection is dead, and without the check the next
    catalog call fails although the server is back. A call made while the server is down still raises
    ``sqlalchemy.exc.OperationalError``, which the ops retry (see ``defs/retries.py``).
    """
    if settings.catalog_sql_uri.startswith("sqlite:"):
        settings.home.mkdir(parents=True, exist_ok=True)
    if settings.warehouse_uri.startswith("file://"):
        Path(settings.warehouse_uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    try:
        return _open(settings)
    except (IntegrityError, ProgrammingError):  # another process created the catalog tables meanwhile
        return _open(settings)


def _open(settings: Settings) -> Catalog:
    return pyiceberg_load_catalog(
        CATALOG_NAME,
        type="sql",
        uri=settings.catalog_sql_uri,
        warehouse=settings.warehouse_uri,
        pool_pre_ping="true",  # one `select 1` per checkout: negligible beside an Iceberg commit
        **fileio_properties(settings),
    )
