"""Operating the platform, Dagster-free: the figures Prometheus scrapes and the exporter that serves them,
Prometheus and Alertmanager on the rules shipped in ``ops/``, and the runbook commands."""
