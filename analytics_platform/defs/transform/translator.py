"""How dbt nodes become Dagster assets: keys that mirror storage, groups by layer.

Sources keep dagster-dbt's default key (``raw/<table>``), which is exactly the key of the ingest
asset that lands that Iceberg table, so lineage runs topic -> raw table -> staging -> marts. Models
are keyed by layer (``staging/stg_purchases``, ``marts/fct_daily_active_users``), as their schemas.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings


class PlatformDbtTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        if dbt_resource_props["resource_type"] in ("snapshot", "seed"):
            return dg.AssetKey([f"{dbt_resource_props['resource_type']}s", dbt_resource_props["name"]])
        fqn = dbt_resource_props["fqn"]
        layer = fqn[1] if len(fqn) > 2 else "models"
        return dg.AssetKey([layer, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] in ("snapshot", "seed"):
            return f"{dbt_resource_props['resource_type']}s"
        fqn = dbt_resource_props["fqn"]
        return fqn[1] if len(fqn) > 2 else None
