"""The dashboards' YAML builds into an import bundle that fits together, without starting Superset."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from analytics_platform.bi import superset
from analytics_platform.exceptions import SupersetError

pytestmark = pytest.mark.fast


def _bundle(source: Path, warehouse: Path) -> dict[str, dict]:
    with zipfile.ZipFile(io.BytesIO(superset.build_bundle(source, warehouse))) as bundle:
        return {name.removeprefix("bundle/"): yaml.safe_load(bundle.read(name)) for name in bundle.namelist()}


def test_the_repo_bundle_builds_with_the_warehouse_path(tmp_path: Path) -> None:
    warehouse = tmp_path / "duckdb" / "warehouse.duckdb"
    files = _bundle(superset.DASHBOARDS_DIR, warehouse)
    assert files["metadata.yaml"]["type"] == "assets"
    assert files["databases/warehouse.yaml"]["sqlalchemy_uri"] == (
        f"duckdb:///{warehouse}?access_mode=read_only&enable_external_access=false&lock_configuration=true"
    )
    charts = {name: doc for name, doc in files.items() if name.startswith("charts/")}
    assert len(charts) == 11  # product 5, operations 6
    for name, chart in charts.items():
        context = json.loads(chart["query_context"])  # Superset stores it as a JSON string
        assert context["queries"], name


def test_charts_use_only_metrics_their_dataset_declares(tmp_path: Path) -> None:
    files = _bundle(superset.DASHBOARDS_DIR, tmp_path / "warehouse.duckdb")
    datasets = {doc["uuid"]: doc for name, doc in files.items() if name.startswith("datasets/")}
    metrics = {uuid: {metric["metric_name"] for metric in doc.get("metrics", [])} for uuid, doc in datasets.items()}
    for name, chart in files.items():
        if not name.startswith("charts/"):
            continue
        params = chart["params"]
        if params.get("query_mode") == "raw":  # a table of rows: columns of its dataset, no metrics
            columns = {column["column_name"] for column in datasets[chart["dataset_uuid"]]["columns"]}
            assert params["all_columns"] and set(params["all_columns"]) <= columns, name
            for query in json.loads(chart["query_context"])["queries"]:
                assert query["columns"] == params["all_columns"] and not query["metrics"], name
            continue
        used = {*params.get("metrics", []), *params.get("metrics_b", [])} | (
            {params["metric"]} if "metric" in params else set()
        )
        assert used and used <= metrics[chart["dataset_uuid"]], name
        for query in json.loads(chart["query_context"])["queries"]:
            assert set(query["metrics"]) <= metrics[chart["dataset_uuid"]], name


def test_a_chart_of_an_unknown_dataset_fails_with_the_file_name(tmp_path: Path) -> None:
    source = tmp_path / "dashboards"
    shutil.copytree(superset.DASHBOARDS_DIR, source)
    chart_file = source / "charts" / "product_active_users.yaml"
    chart = yaml.safe_load(chart_file.read_text())
    chart["dataset_uuid"] = "00000000-0000-0000-0000-000000000000"
    chart_file.write_text(yaml.safe_dump(chart))
    with pytest.raises(SupersetError, match="charts/product_active_users.yaml: dataset_uuid"):
        superset.build_bundle(source, tmp_path / "warehouse.duckdb")


def test_export_tidying_drops_what_the_importer_sets() -> None:
    chart = {
        "viz_type": "echarts_timeseries_bar",
        "params": {"datasource": "7__table", "metrics": ["m"]},
        "query_context": json.dumps({"datasource": {"id": 7, "type": "table"}, "form_data": {}, "queries": []}),
    }
    superset._tidy_chart(chart)
    assert chart == {
        "viz_type": "echarts_timeseries_bar",
        "params": {"metrics": ["m"]},
        "query_context": {"datasource": {"id": 0, "type": "table"}, "queries": []},
    }


def test_secrets_are_created_once_and_private(tmp_path: Path) -> None:
    home = superset.SupersetHome(tmp_path / "superset", tmp_path / "venv", tmp_path / "warehouse.duckdb")
    home.state.mkdir()
    superset.write_config(home)
    secret = (home.state / "secret-key").read_text()
    superset.write_config(home)
    assert (home.state / "secret-key").read_text() == secret
    assert (home.state / "secret-key").stat().st_mode & 0o777 == 0o600
    compile(home.config.read_text(), str(home.config), "exec")  # Superset loads it as Python
