"""What kind of work each job's runs do, as run tags: what the run queue limits by, and how large a
machine a run gets where each run has its own (a Kubernetes pod).

Every job carries ``WORKLOAD_TAG``. The run coordinator limits by it (``docker/dagster.yaml`` and
``deploy/``): one marts build at a time, because each starts from the last published DuckDB file (the
build lock on ``PLATFORM_DUCKDB_DIR`` serialises them anyway, but a second build would hold a pod while it
waits), and one maintenance run at a time, because compaction and retention rewrite the same day partitions.

``K8S_CONFIG_TAG`` is dagster-k8s's per-job pod configuration; other run launchers ignore it. It is merged
last, over the run launcher's and the code location's defaults, so these sizes hold whatever those say.
Memory is requested and limited alike (a run over it is OOM-killed, and run monitoring fails it so its
sensor requests the same work again); CPU is requested but not limited, so a run may use an idle core.
Sizes are the peaks ``make bench`` measures (docs/performance.md) with headroom, where it measures them.
"""

from dataclasses import dataclass

WORKLOAD_TAG = "analytics_platform/workload"
K8S_CONFIG_TAG = "dagster-k8s/config"


@dataclass(frozen=True)
class Workload:
    """One kind of run: its ``WORKLOAD_TAG`` value and the pod it needs (Kubernetes quantities)."""

    name: str
    cpu: str
    memory: str

    def tags(self) -> dict[str, object]:
        resources = {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": {"memory": self.memory}}
        return {WORKLOAD_TAG: self.name, K8S_CONFIG_TAG: {"container_config": {"resources": resources}}}


# An ingest run peaks at 1.1-1.4 GiB at the default PLATFORM_BATCH_MAX_EVENTS and PLATFORM_RUN_MAX_EVENTS
# (two micro-batches in memory; 330 MiB of it Dagster and the imports). Half a core requested: a following
# run mostly waits for messages, and takes an idle core while it decodes a backlog.
INGEST = Workload("ingest", cpu="500m", memory="2Gi")
# Replays decode and land like ingestion, one bounded batch at a time.
REPLAY = Workload("replay", cpu="500m", memory="2Gi")
# A full build of 10 million events peaks at 3.4-5.2 GiB; dbt runs two models at once (profiles.yml threads).
MARTS = Workload("marts", cpu="2", memory="8Gi")
# A dbt run of the live models over the days new rows touched, every few seconds (not measured alone).
LIVE = Workload("live", cpu="1", memory="4Gi")
# A compaction or retention rewrite holds about PLATFORM_COMPACT_TARGET_MB (128 MB) of rows at a time.
MAINTENANCE = Workload("maintenance", cpu="1", memory="2Gi")
# The anomaly checks query the published marts and the raw tables' metadata (not measured alone).
QUALITY = Workload("quality", cpu="1", memory="2Gi")
