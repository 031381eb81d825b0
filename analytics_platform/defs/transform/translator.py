"""How dbt nodes become Dagster assets: keys that mirror storage, groups by layer.

Sources keep dagster-dbt's default key (``raw/<table>``), which is exactly the key of the ingest
asset that lands that Iceberg table, so lineage runs topic -> raw table -> staging -> marts. Models
are keyed by layer (``staging/stg_purchases``, ``marts/fct_daily_active_users``), as their schemas. Marts
carry a freshness policy (see :mod:`analytics_platform.defs.operations.checks`).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from analytics_platform.defs.operations.checks import marts_freshness_policy
from analytics_platform.settings import get_settings
from analytics_platform.warehouse.live import LIVE_TAG


class PlatformDbtTranslator(DagsterDbtTranslator):
    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
        platform = get_settings()
        self._freshness = {live: marts_freshness_policy(platform, live=live) for live in (True, False)}

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        """Marts carry a freshness policy: the live facts' objective or the full builds'."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key.path[0] != "marts":
            return spec
        live = LIVE_TAG in self.get_resource_props(manifest, unique_id).get("tags", [])
        return spec.replace_attributes(freshness_policy=self._freshness[live])

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
