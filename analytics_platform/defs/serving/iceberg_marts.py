"""The published marts as Iceberg tables: an asset after every marts build
(:mod:`analytics_platform.warehouse.iceberg_marts` does the work)."""

import dagster as dg

from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.warehouse.connections import current_build
from analytics_platform.warehouse.iceberg_marts import export_marts

ICEBERG_MARTS = dg.AssetKey(["serving", "iceberg_marts"])


def iceberg_marts_asset(marts: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The asset, downstream of every dbt model in ``marts``."""

    @dg.asset(
        key=ICEBERG_MARTS,
        deps=marts,
        group_name="serving",
        kinds={"iceberg"},
        retry_policy=TRANSIENT_RETRY,
        description="Every mart of the published build as an Iceberg table in the `marts` namespace of the "
        "platform's catalog (one overwrite per build), for Trino, Spark, pyiceberg or any Iceberg reader.",
    )
    def iceberg_marts(context: dg.AssetExecutionContext, platform: PlatformResource) -> dg.MaterializeResult:
        settings = platform.settings()
        with honest_failures(context):
            build = current_build(settings)
            if build is None:
                return dg.MaterializeResult(metadata={"tables": 0})
            written = export_marts(settings, load_catalog(settings), build)
        context.log.info(f"wrote {len(written)} marts of build {build.parent.name} to {settings.marts_namespace}.*")
        return dg.MaterializeResult(
            metadata={"tables": len(written), "rows": dg.MetadataValue.json(written), "build": build.parent.name}
        )

    return iceberg_marts
