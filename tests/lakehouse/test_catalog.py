"""Opening the Iceberg catalog on a new PostgreSQL database from many processes at once."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.settings import get_settings

OPENERS = 8
ROUNDS = 5


def _open_new_catalogs(opener: int, start: Barrier) -> None:
    """Each round: all openers find the catalog tables missing and open the catalog at the same moment."""
    for _ in range(ROUNDS):
        start.wait()
        catalog = load_catalog(get_settings())
        assert catalog.list_namespaces() == []
        start.wait()  # everyone has opened: the first opener drops the tables for the next round
        if opener == 0:
            assert isinstance(catalog, SqlCatalog)
            catalog.destroy_tables()


@pytest.mark.integration
def test_runs_opening_a_new_catalog_at_once_all_succeed(postgres: str) -> None:
    # CI saw it: the runs of several topics started together on a new database, and one failed with
    # "duplicate key value violates unique constraint" while pyiceberg created its tables.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(OPENERS, timeout=60)  # an opener that fails breaks it
        openers = [context.Process(target=_open_new_catalogs, args=(opener, start)) for opener in range(OPENERS)]
        for opener in openers:
            opener.start()
        # Plain processes joined with a deadline, then killed: a pool's terminate() once hung for good
        # on a worker that did not die of SIGTERM.
        deadline = time.monotonic() + OPENERS * ROUNDS * 10
        for opener in openers:
            opener.join(max(deadline - time.monotonic(), 0))
        stuck = [opener.pid for opener in openers if opener.is_alive()]
        for opener in openers:
            if opener.is_alive():
                opener.kill()
                opener.join()
    assert not stuck, f"openers {stuck} did not finish in time"
    assert [opener.exitcode for opener in openers] == [0] * OPENERS  # an assertion or error in one exits 1
