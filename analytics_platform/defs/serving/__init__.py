"""The serving layer's Dagster parts: the compacted metrics topic and the marts as Iceberg tables."""
