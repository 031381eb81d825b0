"""The ``metrics.latest`` topic as a Dagster asset downstream of the headline marts: every marts job
materializes it after its builds publish, and the live follower after each refresh
(:mod:`analytics_platform.serving.metrics_topic` does the work)."""

import dagster as dg

from analytics_platform.defs.resources import PlatformResource
from analytics_platform.defs.retries import TRANSIENT_RETRY, honest_failures
from analytics_platform.defs.transform.published import PublishedMartsResource
from analytics_platform.serving.metrics_topic import MetricsPublisher

METRICS_LATEST = dg.AssetKey(["serving", "metrics_latest"])
HEADLINE_MARTS = [
    dg.AssetKey(["marts", name])
    for name in (
        "fct_daily_active_users",
        "fct_revenue_daily",
        "fct_funnel_daily",
        "fct_events_per_minute",
        "fct_revenue_per_minute",
    )
]


@dg.asset(
    key=METRICS_LATEST,
    deps=HEADLINE_MARTS,
    group_name="serving",
    kinds={"kafka"},
    retry_policy=TRANSIENT_RETRY,
    description="The headline metrics of the published marts on the compacted Kafka topic `metrics.latest` (key "
    "metric:grain:bucket, value JSON with the build and as_of), for dashboards that follow metrics without "
    "querying.",
)
def metrics_latest(
    context: dg.AssetExecutionContext, platform: PlatformResource, marts: PublishedMartsResource
) -> dg.MaterializeResult:
    settings = platform.settings()
    with honest_failures(context), marts.published() as published:
        sent = MetricsPublisher(settings).publish(published.connection, published.build_id, published.path)
    context.log.info(f"sent {sent} headline values of build {published.build_id} to {settings.metrics_topic!r}")
    return dg.MaterializeResult(metadata={"sent": sent, "build": published.build_id, "topic": settings.metrics_topic})
