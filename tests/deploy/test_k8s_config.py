"""deploy/ stays true to the code: the Kubernetes instance and the Helm values name settings, tags, images
and the code location that exist, limit the run queue as docker/dagster.yaml does, by tags the jobs set,
and pin the Dagster version the platform is built on.

The run launcher's config and every job's `dagster-k8s/config` tag go through dagster-k8s's own schemas
(a dev dependency, pinned to the platform's Dagster); the rest of each instance file through Dagster's checks.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

# Not exported by dagster: how an instance file and a configurable class are checked (what
# DagsterInstance.get() does first), without instantiating the run launcher.
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import ConfigurableClassData
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import USER_DEFINED_K8S_JOB_CONFIG_SCHEMA

from analytics_platform.contracts.envelope import event_types
from analytics_platform.definitions import platform_definitions
from analytics_platform.defs.ingestion.jobs import INGEST_LANE_TAG, TOPIC_TAG
from analytics_platform.defs.workloads import (
    INGEST,
    K8S_CONFIG_TAG,
    LIVE,
    MAINTENANCE,
    MARTS,
    QUALITY,
    REPLAY,
    WORKLOAD_TAG,
    Workload,
)
from analytics_platform.serving.replays import CODE_LOCATION
from analytics_platform.settings import Settings

pytestmark = pytest.mark.fast

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_INSTANCE = REPO_ROOT / "docker" / "dagster.yaml"
K8S_INSTANCE = DEPLOY / "k8s" / "dagster.yaml"
PLATFORM = DEPLOY / "k8s" / "platform.yaml"
CHART = DEPLOY / "helm" / "Chart.yaml"
VALUES = DEPLOY / "helm" / "values.yaml"
SCALING_DOC = REPO_ROOT / "docs" / "scaling.md"
DATA_DIR = "/var/lib/analytics-platform"  # PLATFORM_HOME in docker/Dockerfile, where the volume goes
ENTRY_MODULE = "analytics_platform.definitions"
RELEASE = re.compile(r"^\d+\.\d+\.\d+$")
EXPECTED_LIMITS = [
    {"key": INGEST_LANE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 2},
    {"key": WORKLOAD_TAG, "value": MARTS.name, "limit": 1},
    {"key": WORKLOAD_TAG, "value": MAINTENANCE.name, "limit": 1},
]


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), path
    return document


@functools.cache
def job_tags() -> dict[str, dict[str, str]]:
    """Every job of the code location and its tags, as runs get them (Dagster's ad hoc asset job aside)."""
    jobs = platform_definitions().get_repository_def().get_all_jobs()
    return {job.name: dict(job.tags) for job in jobs if job.name != "__ASSET_JOB"}


def helm_values() -> dict[str, Any]:
    return load(VALUES)["dagster"]


def user_deployment() -> dict[str, Any]:
    [deployment] = helm_values()["dagster-user-deployments"]["deployments"]
    return deployment


def snake_keys(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's camelCase keys as the instance file it writes spells them (one level)."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in mapping.items()}


def images(node: object) -> Iterator[dict[str, str]]:
    """Every image (a mapping with repository and tag) anywhere in the Helm values."""
    if isinstance(node, dict):
        if "repository" in node:
            yield node
        for value in node.values():
            yield from images(value)
    elif isinstance(node, list):
        for value in node:
            yield from images(value)


def test_every_yaml_in_deploy_parses_and_is_checked_here() -> None:
    found = sorted(path.relative_to(DEPLOY).as_posix() for path in [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert found == ["helm/Chart.yaml", "helm/values.yaml", "k8s/dagster.yaml", "k8s/platform.yaml"]
    for name in found:
        assert all(isinstance(document, dict) for document in yaml.safe_load_all((DEPLOY / name).read_text())), name


def test_every_platform_variable_named_in_deploy_is_a_setting() -> None:
    settings = {f"PLATFORM_{name.upper()}" for name in Settings.model_fields}
    named = {name for path in DEPLOY.rglob("*.yaml") for name in re.findall(r"PLATFORM_[A-Z0-9_]+", path.read_text())}
    assert named - settings == set()
    [config_map, _] = yaml.safe_load_all(PLATFORM.read_text())
    assert {name for name in config_map["data"] if name.startswith("PLATFORM_")} <= settings
    assert config_map["data"]["PLATFORM_HOME"] == DATA_DIR
    assert config_map["data"]["PLATFORM_DUCKDB_DIR"].startswith(DATA_DIR + "/")
    assert config_map["data"]["PLATFORM_WAREHOUSE"].startswith(f"file://{DATA_DIR}/")


def test_every_job_says_its_workload_and_its_pod_size() -> None:
    ingest = {f"ingest_{name}" for name in event_types()}
    expected: dict[Workload, set[str]] = {
        INGEST: ingest,
        REPLAY: {"replay_kafka_range", "replay_dead_letters"},
        MARTS: {"build_marts", "refresh_marts", "build_daily_marts"},
        LIVE: {"follow_live_facts"},
        MAINTENANCE: {"compact_raw_tables", "expire_raw_snapshots", "apply_raw_retention"},
        QUALITY: {"check_anomalies"},
    }
    assert set(job_tags()) == set().union(*expected.values())
    for workload, names in expected.items():
        for name in names:
            tags = job_tags()[name]
            assert tags[WORKLOAD_TAG] == workload.name, name
            resources = json.loads(tags[K8S_CONFIG_TAG])["container_config"]["resources"]
            assert resources == {
                "requests": {"cpu": workload.cpu, "memory": workload.memory},
                "limits": {"memory": workload.memory},
            }, name
    assert {job_tags()[name][TOPIC_TAG] for name in ingest} == {t.topic for t in event_types().values()}
    assert {job_tags()[name][INGEST_LANE_TAG] for name in ingest} == {t.topic for t in event_types().values()}


def test_run_queue_limits_are_the_same_everywhere_and_use_tags_the_jobs_set() -> None:
    compose = load(COMPOSE_INSTANCE)["run_coordinator"]["config"]
    k8s = load(K8S_INSTANCE)["run_coordinator"]["config"]
    helm = snake_keys(helm_values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"])
    assert compose == k8s == helm
    assert compose["tag_concurrency_limits"] == EXPECTED_LIMITS
    for limit in compose["tag_concurrency_limits"]:
        values = {tags[limit["key"]] for tags in job_tags().values() if limit["key"] in tags}
        if isinstance(limit["value"], str):
            assert limit["value"] in values, limit
        else:  # one limit per value: the tag tells the jobs apart
            assert len(values) > 1, limit


def test_run_queue_leaves_room_for_every_run_the_sensors_keep_in_flight() -> None:
    """A run past max_concurrent_runs waits in the queue: a follower's successor there would not start
    before its predecessor ends, and the topic would pay a run launch after all."""
    config = load(COMPOSE_INSTANCE)["run_coordinator"]["config"]

    def limit(key: str, value: object) -> int:
        return next(x["limit"] for x in config["tag_concurrency_limits"] if (x["key"], x["value"]) == (key, value))

    # One lane per topic at the default PLATFORM_INGEST_WORKERS_PER_TOPIC (docs/scaling.md says how to raise it).
    lanes = {tags[INGEST_LANE_TAG] for tags in job_tags().values() if INGEST_LANE_TAG in tags}
    in_flight = (
        limit(INGEST_LANE_TAG, {"applyLimitPerUniqueValue": True}) * len(lanes)
        + 2  # the live follower and its successor
        + limit(WORKLOAD_TAG, MARTS.name)
        + limit(WORKLOAD_TAG, MAINTENANCE.name)
        + 1  # the hourly anomaly checks
    )
    assert config["max_concurrent_runs"] >= in_flight


@pytest.mark.parametrize(
    ("path", "classes"),
    [
        (COMPOSE_INSTANCE, ("run_coordinator", "run_launcher", "compute_logs")),
        (K8S_INSTANCE, ("run_coordinator", "compute_logs")),  # its run launcher would need a cluster: below
    ],
    ids=["docker", "k8s"],
)
def test_instance_file_passes_dagsters_checks(path: Path, classes: tuple[str, ...], tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text(path.read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    for section in classes:
        entry = config[section]
        # Instantiating the class checks its config against the class's own schema.
        ConfigurableClassData(entry["module"], entry["class"], yaml.safe_dump(entry["config"])).rehydrate()


def test_k8s_run_launcher_and_job_tags_pass_dagster_k8s_schemas() -> None:
    """What K8sRunLauncher checks when the daemon starts and when it launches a run, without a cluster."""
    launcher = process_config(K8sRunLauncher.config_type(), load(K8S_INSTANCE)["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    jobs = [job for job in platform_definitions().get_repository_def().get_all_jobs() if K8S_CONFIG_TAG in job.tags]
    assert len(jobs) > 10
    for job in jobs:
        pod_config = json.loads(job.tags[K8S_CONFIG_TAG])  # a job's tags are stored as strings
        pod = process_config(USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, pod_config)
        assert pod.success, (job.name, pod.errors)
    typo = process_config(USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, {"container_confg": {}})
    assert not typo.success  # the schema is strict: a misspelt key would not be silently dropped


def test_k8s_instance_launches_each_run_in_a_pod_with_the_platforms_settings_and_volume() -> None:
    instance = load(K8S_INSTANCE)
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    config = launcher["config"]
    [config_map, claim] = yaml.safe_load_all(PLATFORM.read_text())
    assert config["env_config_maps"] == [config_map["metadata"]["name"]]
    assert config["env_secrets"] == [s["name"] for s in user_deployment()["envSecrets"]]
    [volume] = config["volumes"]
    assert volume["persistent_volume_claim"] == {"claim_name": claim["metadata"]["name"]}
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert config["volume_mounts"] == [{"name": volume["name"], "mount_path": DATA_DIR}]
    assert config["postgres_password_secret"] == helm_values()["global"]["postgresqlSecretName"]
    database = instance["storage"]["postgres"]["postgres_db"]
    assert {name: database[name] for name in ("username", "hostname", "db_name")} == {
        "username": {"env": "DAGSTER_PG_USER"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    assert {"DAGSTER_PG_USER", "DAGSTER_PG_HOST", "DAGSTER_PG_DB"} <= set(config_map["data"])


def test_helm_values_ask_for_the_k8s_instance() -> None:
    instance = load(K8S_INSTANCE)
    values = helm_values()
    daemon = values["dagsterDaemon"]
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    assert launcher["config"]["k8sRunLauncher"]["jobNamespace"] == instance["run_launcher"]["config"]["job_namespace"]
    assert snake_keys(daemon["runMonitoring"]) == instance["run_monitoring"]
    assert snake_keys(daemon["runRetries"]) == instance["run_retries"]
    assert values["computeLogManager"]["config"]["customComputeLogManager"] == instance["compute_logs"]
    assert values["telemetry"] == instance["telemetry"] == {"enabled": False}
    postgres = values["postgresql"]
    [config_map, _] = yaml.safe_load_all(PLATFORM.read_text())
    assert postgres["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in postgres
    assert postgres["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert (postgres["postgresqlHost"], postgres["postgresqlUsername"], postgres["postgresqlDatabase"]) == (
        config_map["data"]["DAGSTER_PG_HOST"],
        config_map["data"]["DAGSTER_PG_USER"],
        config_map["data"]["DAGSTER_PG_DB"],
    )


def test_helm_user_deployment_serves_the_code_location_runs_inherit() -> None:
    deployment = user_deployment()
    launcher = load(K8S_INSTANCE)["run_launcher"]["config"]
    assert deployment["codeServerArgs"] == ["-m", ENTRY_MODULE]
    [entry] = load(REPO_ROOT / "workspace.yaml")["load_from"]
    assert entry["python_module"] == {"module_name": ENTRY_MODULE, "location_name": CODE_LOCATION}
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert [m["name"] for m in deployment["envConfigMaps"]] == launcher["env_config_maps"]
    [volume] = deployment["volumes"]
    assert volume["persistentVolumeClaim"] == {
        "claimName": launcher["volumes"][0]["persistent_volume_claim"]["claim_name"]
    }
    assert deployment["volumeMounts"] == [{"name": volume["name"], "mountPath": DATA_DIR}]
    assert deployment["podSecurityContext"] == {
        "fsGroup": launcher["run_k8s_config"]["pod_spec_config"]["security_context"]["fs_group"]
    }
    webserver = helm_values()["dagsterWebserver"]
    # Kubernetes names allow no underscore: the location keeps its name through the workspace entry.
    assert webserver["workspace"] == {
        "enabled": True,
        "servers": [{"host": deployment["name"], "port": deployment["port"], "name": CODE_LOCATION}],
    }


def test_versions_are_pinned_to_the_dagster_and_the_platform_they_were_built_with() -> None:
    dagster_version = metadata.version("dagster")
    platform_version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = load(CHART)
    assert chart["dependencies"] == [
        {"name": "dagster", "version": dagster_version, "repository": "https://dagster-io.github.io/helm"}
    ]
    assert chart["appVersion"] == platform_version
    found = sorted((image["repository"], image["tag"]) for image in images(helm_values()))
    assert found == [
        ("docker.io/dagster/dagster-k8s", dagster_version),  # the webserver's
        ("docker.io/dagster/dagster-k8s", dagster_version),  # the daemon's
        ("registry.example.com/analytics-platform", platform_version),  # the code location's, and its runs'
    ]
    assert all(RELEASE.match(tag) for _, tag in found)  # an exact release: never latest, never a range


def test_scaling_doc_lists_each_workloads_jobs_and_pod() -> None:
    """The table in docs/scaling.md#dagster-on-kubernetes: workload, jobs, CPU requested, memory."""
    section = SCALING_DOC.read_text().partition("## Dagster on Kubernetes")[2].partition("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| `(\w+)` \| `(\w+)` \|$", section, re.MULTILINE)
    documented = {(name, frozenset(re.findall(r"`(\w+)`", jobs)), cpu, memory) for name, jobs, cpu, memory in rows}
    by_workload: dict[str, set[str]] = {}
    for job, tags in job_tags().items():
        by_workload.setdefault(tags[WORKLOAD_TAG], set()).add(job)
    workloads = {w.name: w for w in (INGEST, REPLAY, MARTS, LIVE, MAINTENANCE, QUALITY)}
    assert documented == {
        (name, frozenset(jobs), workloads[name].cpu, workloads[name].memory) for name, jobs in by_workload.items()
    }
