"""BI access to the published marts: a Postgres-wire SQL endpoint and Superset dashboards kept as code."""
