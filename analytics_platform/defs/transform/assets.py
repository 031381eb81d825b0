"""All dbt models, snapshots and tests as Dagster assets and asset checks.

Each build writes a fresh DuckDB file and publishes it only if dbt succeeds (see
:mod:`analytics_platform.warehouse`), so readers of the marts never see a half-built state.
"""

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from analytics_platform import warehouse
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.transform.project import dbt_project
from analytics_platform.defs.transform.translator import PlatformDbtTranslator
from analytics_platform.ingest.lakehouse import load_catalog


@contextlib.contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """dagster-dbt hands the current environment to the dbt subprocess; set ours for that call only."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dbt_assets(
    manifest=dbt_project().manifest_path,
    project=dbt_project(),
    dagster_dbt_translator=PlatformDbtTranslator(),
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, platform: PlatformResource) -> Iterator:
    settings = platform.settings()
    with warehouse.build_lock(settings):
        build = warehouse.prepare_build(settings, load_catalog(settings))
        context.log.info(f"building into {build}")
        try:
            with _environment(
                PLATFORM_DBT_DUCKDB_PATH=str(build),
                PLATFORM_DUCKDB_EXTENSION_DIR=str(warehouse.extension_directory(settings)),
            ):
                invocation = dbt.cli(["build"], context=context)
            yield from invocation.stream()
        except BaseException:
            warehouse.discard(build)
            raise
        warehouse.publish(settings, build)
        context.log.info(f"published {build.name} as {warehouse.published_link(settings)}")
