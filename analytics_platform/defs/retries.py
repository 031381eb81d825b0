"""Honest retries: transient failures are retried with backoff and jitter, terminal ones never.

Every op of the platform runs its work inside :func:`honest_failures`. A :class:`TerminalError`
(or an error that says the same, such as a full disk) becomes ``dg.Failure(allow_retries=False)``
with the fix in its description, and the run is tagged so the sensors do not request the same work
again; anything else propagates, and the op's :data:`TRANSIENT_RETRY` policy retries it. Runs whose
worker died (no failure raised at all) are failed by run monitoring and requested again by their
sensor, or re-executed by run retries for jobs without a sensor (``CRASH_RETRY_TAGS``).
"""

import contextlib
from collections.abc import Iterator

import dagster as dg

from analytics_platform.defs.runs import TERMINAL_TAG
from analytics_platform.exceptions import ModelBuildError, TerminalError, WarehouseFullError
from analytics_platform.settings import get_settings

# 2, 4, 8, 16 s (each +-50%): long enough to ride out a database restart or a broker election.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=4, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
# Run retries re-execute a run that failed without a step failure (its worker died); a step that
# failed has had its op retries already, so it is not retried again as a whole run.
CRASH_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_on_asset_or_op_failure": "false"}


def as_terminal(error: BaseException) -> TerminalError | None:
    """The terminal error ``error`` is, or means, or None if a retry may help.

    A lost database connection (``sqlalchemy.exc.OperationalError``: PostgreSQL restarting, failing
    over) is transient, as is anything not named here: None, and the op's retry policy retries it.
    """
    if isinstance(error, TerminalError):
        return error
    # Here: ingestion runs never import dagster-dbt, nor DuckDB (which builds imports).
    from dagster_dbt.errors import DagsterDbtCliRuntimeError

    from analytics_platform.warehouse.builds import is_disk_full, warehouse_full

    if isinstance(error, DagsterDbtCliRuntimeError):
        if is_disk_full(error):  # dbt writes the build and its target folders in PLATFORM_DUCKDB_DIR
            return warehouse_full(get_settings(), "dbt, writing the new build or its target folder,")
        # A model that does not compile or a data test that fails does so again on the same data.
        return ModelBuildError(f"{error}; fix the model or the data it reads (the dbt output above names the node)")
    if is_disk_full(error):
        where = getattr(error, "filename", None) or "the platform home"
        return WarehouseFullError(
            f"no space left on the device holding {where}; free space there or point PLATFORM_HOME (or "
            "PLATFORM_DUCKDB_DIR, PLATFORM_WAREHOUSE) at a larger volume."
        )
    return None


@contextlib.contextmanager
def honest_failures(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Iterator[None]:
    """Turn terminal errors raised inside into non-retryable failures (and tag the run); let the rest retry."""
    try:
        yield
    except Exception as error:  # a dg.Failure too: dagster-dbt raises its CLI errors as one
        terminal = as_terminal(error)
        if terminal is None:
            raise
        context.instance.add_run_tags(context.run.run_id, {TERMINAL_TAG: type(terminal).__name__})
        raise dg.Failure(
            description=f"{type(terminal).__name__}: {terminal}\n(not retried: retrying cannot fix this)",
            allow_retries=False,
        ) from error
