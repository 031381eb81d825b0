"""Opening the Iceberg catalog on a new PostgreSQL database from many processes at once."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.settings import get_settings

OPENERS = 8
ROUNDS = 5


def _open_new_catalogs(opener: int, start: Barrier) -> int:
    """Each round: all openers find the catalog tables missing and open the catalog at the same moment."""
    opened = 0
    for _ in range(ROUNDS):
        start.wait()
        catalog = load_catalog(get_settings())
        assert catalog.list_namespaces() == []
        opened += 1
        start.wait()  # everyone has opened: the first opener drops the tables for the next round
        if opener == 0:
            assert isinstance(catalog, SqlCatalog)
            catalog.destroy_tables()
    return opened


@pytest.mark.integration
def test_runs_opening_a_new_catalog_at_once_all_succeed(postgres: str) -> None:
    # CI saw it: the runs of several topics started together on a new database, and one failed with
    # "duplicate key value violates unique constraint" while pyiceberg created its tables.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(OPENERS, timeout=60)  # an opener that fails breaks it
        with context.Pool(OPENERS) as pool:
            # A worker that dies without raising (killed) would leave starmap waiting for ever: bound it.
            work = pool.starmap_async(_open_new_catalogs, [(opener, start) for opener in range(OPENERS)])
            opened = work.get(timeout=OPENERS * ROUNDS * 10)
    assert opened == [ROUNDS] * OPENERS
