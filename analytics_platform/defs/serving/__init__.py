"""The serving layer's Dagster parts: the compacted metrics topic."""
