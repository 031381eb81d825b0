"""All dbt models, snapshots and tests as Dagster assets and asset checks.

Each build writes a fresh DuckDB file and publishes it only if dbt succeeds (see
:mod:`analytics_platform.warehouse`), so readers of the marts never see a half-built state.

The SCD2 snapshots are fed one uncaptured change per key per ``dbt snapshot`` (see the macro
``next_unsnapshotted_change``), so a build first repeats ``dbt snapshot`` until nothing is pending:
however many versions of a product one ingest batch carried, every one gets its own row.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource, dbt_assets

from analytics_platform import warehouse
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform import live
from analytics_platform.defs.transform.partitions import DAILY_TAG, daily_partitions
from analytics_platform.defs.transform.project import dbt_pointed_at, dbt_project, dbt_target
from analytics_platform.defs.transform.translator import PlatformDbtTranslator
from analytics_platform.events import EVENT_TYPES
from analytics_platform.exceptions import PlatformError
from analytics_platform.ingest.lakehouse import load_catalog, raw_table

SNAPSHOTS = ("snap_users", "snap_products")
REFERENCE_TYPES = ("user_profile_changed", "product_changed")
MAX_SNAPSHOT_ROUNDS = 1_000
# dbt's advice: unit tests prove the models' logic on fixed inputs, so they run in CI (make test), not in
# every production build (~4 s of each here). Data tests, which check the data, still gate every build.
PRODUCTION_FLAGS = ("--exclude-resource-type", "unit_test")
FULL_BUILD_SLOT = "full"  # builds under the build lock (the live follower has its own slot)


def _snapshot_rows(build: Path) -> int:
    """Rows in the SCD2 snapshot tables of a build (0 before the first snapshot)."""
    with duckdb.connect(str(build), read_only=True) as con:
        existing = {
            row[0]
            for row in con.execute("select table_name from duckdb_tables() where schema_name = 'snapshots'").fetchall()
        }
        total = 0
        for name in SNAPSHOTS:
            if name in existing:
                (count,) = con.execute(f"select count(*) from snapshots.{name}").fetchall()[0]
                total += int(count)
        return total


def _has_reference_data(platform: PlatformResource) -> bool:
    """Whether any reference change landed; without any, the snapshot rounds (two dbt runs) are skipped."""
    settings = platform.settings()
    catalog = load_catalog(settings)
    return any(
        (snapshot := raw_table(catalog, settings, EVENT_TYPES[name]).current_snapshot()) is not None
        and int((snapshot.summary.additional_properties if snapshot.summary else {}).get("total-records", 0)) > 0
        for name in REFERENCE_TYPES
    )


def snapshot_until_complete(dbt: DbtCliResource, build: Path, target: Path, log: dg.DagsterLogManager) -> int:
    """Run ``dbt snapshot`` until a round captures nothing new; returns the rounds that captured versions."""
    dbt.cli(["run", "--select", "path:models/staging"], target_path=target).wait()  # the snapshots' inputs
    rows = _snapshot_rows(build)
    for round_number in range(MAX_SNAPSHOT_ROUNDS):
        dbt.cli(["snapshot"], target_path=target).wait()
        captured = _snapshot_rows(build) - rows
        if captured == 0:
            return round_number
        log.info(f"snapshot round {round_number + 1}: {captured:,} new versions")
        rows += captured
    raise PlatformError(
        f"dbt snapshot still captured new versions after {MAX_SNAPSHOT_ROUNDS} rounds; is a change log looping?"
    )


@contextlib.contextmanager
def _published_build(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    dbt: DbtCliResource,
    covered: tuple[str, str] | None = None,
) -> Iterator[Path]:
    """A new DuckDB build (a copy of the published one) with dbt pointed at it, published on success.

    ``covered``: the daily partitions (first, last) the build recomputes, live facts included."""
    settings = platform.settings()
    with warehouse.build_lock(settings):
        started_from = warehouse.current_build(settings)
        build = warehouse.prepare_build(settings, load_catalog(settings))
        context.log.info(f"building into {build}")
        try:
            with dbt_pointed_at(settings, build, FULL_BUILD_SLOT, covered):
                yield build
            if covered is not None:
                live.advance_live_pins(settings, build, covered)
            with warehouse.publish_lock(settings):
                if warehouse.current_build(settings) != started_from:
                    # The live follower published meanwhile: never publish live facts older than its.
                    live.catch_up_live_facts(dbt, settings, build, context.log)
                warehouse.publish(settings, build)
        except BaseException:
            warehouse.discard(build)
            raise
        context.log.info(f"published {build.name} as {warehouse.published_link(settings)}")


@dbt_assets(
    manifest=dbt_project().manifest_path,
    project=dbt_project(),
    dagster_dbt_translator=PlatformDbtTranslator(),
    exclude=f"tag:{DAILY_TAG}",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, platform: PlatformResource) -> Iterator:
    """Snapshots, staging, intermediate models, dimensions and the marts that are not daily."""
    target = dbt_target(platform.settings(), "models")
    with _published_build(context, platform, dbt) as build:
        if _has_reference_data(platform):
            snapshot_until_complete(dbt, build, target, context.log)
        yield from dbt.cli(["build", *PRODUCTION_FLAGS], context=context, target_path=target).stream()


@dbt_assets(
    manifest=dbt_project().manifest_path,
    project=dbt_project(),
    dagster_dbt_translator=PlatformDbtTranslator(),
    select=f"tag:{DAILY_TAG}",
    partitions_def=daily_partitions,
    # A backfill of many days is one run: one dbt invocation deletes and rebuilds the whole range.
    backfill_policy=dg.BackfillPolicy.single_run(),
    name="daily_marts",
)
def daily_marts(context: dg.AssetExecutionContext, dbt: DbtCliResource, platform: PlatformResource) -> Iterator:
    """The daily facts for the run's partition range: those days are deleted and recomputed, no others."""
    window = context.partition_key_range
    context.log.info(f"rebuilding days {window.start} .. {window.end}")
    with _published_build(context, platform, dbt, covered=(window.start, window.end)):
        command = ["build", *PRODUCTION_FLAGS]
        yield from dbt.cli(command, context=context, target_path=dbt_target(platform.settings(), "daily")).stream()
