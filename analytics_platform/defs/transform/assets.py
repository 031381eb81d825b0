"""Every dbt node as Dagster assets and asset checks, in three groups built on first use.

- **snapshots**: the SCD2 snapshots and the staging models that feed them (repeated ``dbt snapshot``
  rounds, see :mod:`analytics_platform.warehouse.scd2`, then one streamed ``dbt build``);
- **models**: staging, intermediate, dimensions and the marts that are not daily;
- **daily marts**: the daily facts, partitioned by day; a run deletes and recomputes its days only.

Each step writes a fresh DuckDB file and publishes it only if dbt succeeds (see
:mod:`analytics_platform.warehouse.builds`), so readers of the marts never see a half-built state.
The factories are cached: dbt's manifest is read when Dagster loads the definitions, not at import.
"""

import contextlib
import functools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
from pydantic import Field

from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.transform.partitions import DAILY_TAG, daily_partitions
from analytics_platform.defs.transform.project import dbt_manifest, dbt_project
from analytics_platform.defs.transform.published import PublishedMartsResource, observe_published
from analytics_platform.defs.transform.translator import PlatformDbtTranslator
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.operations import tracing
from analytics_platform.warehouse import builds, live
from analytics_platform.warehouse.dbt import dbt_pointed_at, dbt_target
from analytics_platform.warehouse.scd2 import has_reference_data, snapshot_until_complete

# dbt's advice: unit tests prove the models' logic on fixed inputs, so they run in CI (make test), not in
# every production build (~4 s of each here). Data tests, which check the data, still gate every build.
PRODUCTION_FLAGS = ("--exclude-resource-type", "unit_test")
FULL_BUILD_SLOT = "full"  # builds under the build lock (the live follower has its own slot)
SNAPSHOT_SELECTION = "+resource_type:snapshot"  # the snapshots and the staging models they read


@contextlib.contextmanager
def published_build(
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    dbt: DbtCliResource,
    marts: PublishedMartsResource,
    covered: tuple[str, str] | None = None,
    as_of: datetime | None = None,
) -> Iterator[Path]:
    """A new DuckDB build (a copy of the published one) with dbt pointed at it, published on success.

    ``covered``: the daily partitions (first, last) the build recomputes, live facts included.
    ``as_of``: the raw views show only rows ingested by then (a replay from a known good checkpoint).
    Traced as a span ``build marts`` (docs/operations.md#tracing)."""
    settings = platform.settings()
    tracing.setup(settings)

    def run_dbt(args: list[str], target: Path) -> None:
        dbt.cli(args, target_path=target).wait()

    attributes: dict[str, str | list[str]] = {
        tracing.BUILD_KIND: context.op_def.name,
        tracing.DAGSTER_RUN_ID: context.run.run_id,
    }
    if covered is not None:
        attributes["analytics_platform.days"] = list(covered)
    if as_of is not None:
        attributes["analytics_platform.raw_as_of"] = as_of.isoformat()
    # Not the current span: the block spans the asset's yields to Dagster.
    with builds.build_lock(settings), tracing.span("build marts", attributes=attributes, current=False) as span:
        started_from = builds.current_build(settings)
        build = builds.prepare_build(settings, load_catalog(settings), as_of)
        span.set_attribute(tracing.BUILD_ID, builds.build_id(build))
        if span.is_recording():
            previous = builds.read_pins(build, builds.MARTS_PINS) or {}
            pins = builds.read_pins(build, builds.RAW_PINS) or {}
            builds.link_raw_batches(span, settings, load_catalog(settings), previous, pins)
        context.log.info(f"building into {build}")
        try:
            with dbt_pointed_at(settings, build, FULL_BUILD_SLOT, covered):
                yield build
            if as_of is not None:  # the as-of views served this build's dbt only: readers get today's raw
                builds.pin_raw_views(settings, load_catalog(settings), build)
            builds.record_pins(build, builds.MARTS_PINS, builds.read_pins(build, builds.RAW_PINS) or {})
            if covered is not None and as_of is None:  # as of a checkpoint, live facts reflect the checkpoint
                live.advance_live_pins(settings, build, covered)
            with builds.publish_lock(settings):
                if builds.current_build(settings) != started_from:
                    # The live follower published meanwhile: never publish live facts older than its.
                    live.catch_up_live_facts(run_dbt, settings, build, context.log)
                builds.publish(settings, build)
        except BaseException:
            builds.discard(build)
            raise
        context.log.info(f"published {build.name} as {builds.published_link(settings)}")
        observe_published(context, marts)


def managed_relations() -> set[tuple[str, str]]:
    """(schema, name) of every model (but ephemeral ones), snapshot and seed the dbt project defines."""
    return {
        (node["schema"], node["alias"] or node["name"])
        for node in dbt_manifest()["nodes"].values()
        if node["resource_type"] in ("model", "snapshot", "seed") and node["config"].get("materialized") != "ephemeral"
    }


@functools.cache
def dbt_snapshot_assets() -> dg.AssetsDefinition:
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=PlatformDbtTranslator(),
        select=SNAPSHOT_SELECTION,
        name="dbt_snapshots",
        retry_policy=TRANSIENT_RETRY,
    )
    def dbt_snapshots(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        platform: PlatformResource,
        marts: PublishedMartsResource,
    ) -> Iterator:
        """SCD2 history of the reference data: every version of every product and user profile."""
        settings = platform.settings()
        target = dbt_target(settings, "snapshots")
        with honest_failures(context), published_build(context, platform, dbt, marts) as build:
            if has_reference_data(load_catalog(settings), settings):
                inputs = ["run", "--select", SNAPSHOT_SELECTION, "--exclude", "resource_type:snapshot"]
                dbt.cli(inputs, target_path=target).wait()

                def run_snapshot() -> None:
                    dbt.cli(["snapshot"], target_path=target).wait()

                rounds = snapshot_until_complete(run_snapshot, build, context.log.info)
                context.log.info(f"snapshots complete after {rounds} round(s) that captured new versions")
            yield from dbt.cli(["build", *PRODUCTION_FLAGS], context=context, target_path=target).stream()

    return dbt_snapshots


@functools.cache
def dbt_model_assets() -> dg.AssetsDefinition:
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=PlatformDbtTranslator(),
        exclude=f"tag:{DAILY_TAG} {SNAPSHOT_SELECTION}",
        name="dbt_models",
        retry_policy=TRANSIENT_RETRY,
    )
    def dbt_models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        platform: PlatformResource,
        marts: PublishedMartsResource,
    ) -> Iterator:
        """Staging, intermediate models, dimensions and the marts that are not daily."""
        target = dbt_target(platform.settings(), "models")
        with honest_failures(context), published_build(context, platform, dbt, marts) as build:
            yield from dbt.cli(["build", *PRODUCTION_FLAGS], context=context, target_path=target).stream()
            if dropped := builds.drop_orphans(build, managed_relations()):
                context.log.info(f"dropped relations the dbt project no longer defines: {', '.join(dropped)}")

    return dbt_models


class DailyMartsConfig(dg.Config):
    """Left empty, the days are rebuilt from the raw tables as they are now."""

    raw_as_of: str = Field(
        default="",
        description="ISO timestamp with time zone: rebuild from the raw rows ingested by then (a known good "
        "checkpoint); rows ingested later are left out of these days until they are rebuilt again.",
    )


@functools.cache
def daily_mart_assets() -> dg.AssetsDefinition:
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=PlatformDbtTranslator(),
        select=f"tag:{DAILY_TAG}",
        partitions_def=daily_partitions,
        # A backfill of many days is one run: one dbt invocation deletes and rebuilds the whole range.
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="daily_marts",
        retry_policy=TRANSIENT_RETRY,
    )
    def daily_marts(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        platform: PlatformResource,
        marts: PublishedMartsResource,
        config: DailyMartsConfig,
    ) -> Iterator:
        """The daily facts for the run's partition range: those days are deleted and recomputed, no others."""
        window = context.partition_key_range
        as_of = datetime.fromisoformat(config.raw_as_of) if config.raw_as_of else None
        context.log.info(
            f"rebuilding days {window.start} .. {window.end}" + (f" from raw as of {as_of}" if as_of else "")
        )
        target = dbt_target(platform.settings(), "daily")
        covered = (window.start, window.end)
        with honest_failures(context), published_build(context, platform, dbt, marts, covered, as_of):
            yield from dbt.cli(["build", *PRODUCTION_FLAGS], context=context, target_path=target).stream()

    return daily_marts
