"""The lake's maintenance jobs: compaction, snapshot expiry with orphan files, retention (hot, cold, deleted).

Thin ops over :mod:`analytics_platform.lakehouse.compaction`, :mod:`~analytics_platform.lakehouse.expiry`
and :mod:`~analytics_platform.lakehouse.retention`, each with a ``dry_run`` config that only logs what it
would do. Each is safe alongside ingestion and idempotent: a run retried after a crash finds less to do.
"""

from collections import defaultdict

import dagster as dg
from pydantic import Field

from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import CRASH_RETRY_TAGS, TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.workloads import MAINTENANCE
from analytics_platform.lakehouse.compaction import Rewrite, compact_raw_tables
from analytics_platform.lakehouse.expiry import expire_and_clean
from analytics_platform.lakehouse.retention import apply_retention

COMPACT_JOB = "compact_raw_tables"
EXPIRE_JOB = "expire_raw_snapshots"
RETENTION_JOB = "apply_raw_retention"
TAGS = CRASH_RETRY_TAGS | MAINTENANCE.tags()


class MaintenanceConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Only log what the job would do; change nothing.")


def _observe(context: dg.OpExecutionContext, rewrites: list[Rewrite], what: str) -> None:
    """An observation of each raw table that was rewritten, so its page shows the files before and after."""
    by_table: dict[str, list[Rewrite]] = defaultdict(list)
    for rewrite in rewrites:
        by_table[rewrite.table].append(rewrite)
    for table, done in by_table.items():
        metadata: dict[str, dg.RawMetadataValue] = {
            f"{what}_days": len({rewrite.day for rewrite in done}),
            "files_before": sum(rewrite.files_before for rewrite in done),
            "files_after": sum(rewrite.files_after for rewrite in done),
            "rows_rewritten": sum(rewrite.rows for rewrite in done),
        }
        context.log_event(dg.AssetObservation(dg.AssetKey(table.split(".")), metadata=metadata))


@dg.op(retry_policy=TRANSIENT_RETRY)
def compact_raw_tables_op(
    context: dg.OpExecutionContext, config: MaintenanceConfig, platform: PlatformResource
) -> dg.Output[None]:
    """Rewrite the small files of the raw days that are due (finished, or today's past the small-file count) into
    files of the target size."""
    with honest_failures(context):
        rewrites = compact_raw_tables(platform.settings(), dry_run=config.dry_run, progress=context.log.info)
    if not config.dry_run:
        _observe(context, rewrites, "compacted")
    return dg.Output(
        None,
        metadata={
            "dry_run": config.dry_run,
            "groups": len(rewrites),
            "files_before": sum(rewrite.files_before for rewrite in rewrites),
            "files_after": sum(rewrite.files_after for rewrite in rewrites),
            "rows": sum(rewrite.rows for rewrite in rewrites),
        },
    )


@dg.op(retry_policy=TRANSIENT_RETRY)
def expire_raw_snapshots_op(
    context: dg.OpExecutionContext, config: MaintenanceConfig, platform: PlatformResource
) -> dg.Output[None]:
    """Expire old snapshots and delete the files unreferenced for PLATFORM_ORPHAN_GRACE_HOURS."""
    with honest_failures(context):
        cleanups = expire_and_clean(platform.settings(), dry_run=config.dry_run, progress=context.log.info)
    return dg.Output(
        None,
        metadata={
            "dry_run": config.dry_run,
            "snapshots_expired": sum(cleanup.snapshots_expired for cleanup in cleanups),
            "files_deleted": sum(len(cleanup.deleted) for cleanup in cleanups),
            "bytes_deleted": sum(cleanup.bytes_deleted for cleanup in cleanups),
            "files_waiting": sum(cleanup.waiting for cleanup in cleanups),
        },
    )


@dg.op(retry_policy=TRANSIENT_RETRY)
def apply_raw_retention_op(
    context: dg.OpExecutionContext, config: MaintenanceConfig, platform: PlatformResource
) -> dg.Output[None]:
    """Move raw days past PLATFORM_RAW_HOT_DAYS to cold storage, delete those past the retention settings."""
    with honest_failures(context):
        report = apply_retention(platform.settings(), dry_run=config.dry_run, progress=context.log.info)
    if not config.dry_run:
        _observe(context, report.moved, "moved_cold")
    return dg.Output(
        None,
        metadata={
            "dry_run": config.dry_run,
            "days_moved_cold": len({(rewrite.table, rewrite.day) for rewrite in report.moved}),
            "days_deleted": len(report.dropped),
            "rows_deleted": sum(drop.rows for drop in report.dropped),
        },
    )


@dg.job(name=COMPACT_JOB, executor_def=dg.in_process_executor, tags=TAGS)
def compact_raw_tables_job() -> None:
    """Compaction of the raw days that are due (`analytics-platform maintain compact`); see its sensor."""
    compact_raw_tables_op()


@dg.job(name=EXPIRE_JOB, executor_def=dg.in_process_executor, tags=TAGS)
def expire_raw_snapshots_job() -> None:
    """Snapshot expiry; unreferenced files deleted after the grace period (`analytics-platform maintain expire`)."""
    expire_raw_snapshots_op()


@dg.job(name=RETENTION_JOB, executor_def=dg.in_process_executor, tags=TAGS)
def apply_raw_retention_job() -> None:
    """Hot, cold and deleted raw days; dead-letter retention (`analytics-platform maintain retain`)."""
    apply_raw_retention_op()
