-- Runs once, on an empty data volume. POSTGRES_DB creates `dagster` (Dagster's run, event and
-- schedule storage); this adds `iceberg` (the pyiceberg SQL catalog), owned by the same user.
CREATE DATABASE iceberg;
