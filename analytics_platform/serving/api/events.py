"""``/v1/events``: from a correlation id to every raw event and dead letter that carries it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.serving.access import Role
from analytics_platform.serving.api.deps import CallerDep, ServicesDep
from analytics_platform.serving.api.metrics import ERRORS
from analytics_platform.serving.events import events_by_correlation_id

router = APIRouter(prefix="/v1/events", tags=["drill-down"])


class Events(BaseModel):
    correlation_id: str
    events: list[dict[str, Any]] = Field(
        description="Raw events in event time order: the envelope, the payload, `table`, `kafka` "
        "(topic, partition, offset) and `landed_by` (the Iceberg snapshot and Dagster run that landed it; "
        "null once the table no longer keeps that snapshot)."
    )
    dead_letters: list[dict[str, Any]] = Field(description="Messages rejected at ingestion whose bytes carry it.")
    dead_letters_visible: bool = Field(description="False for a country-limited key, which sees no dead letters.")
    snapshots: dict[str, str] = Field(description="The snapshot of each raw table that was read (0: none yet).")


@router.get("", response_model=Events, responses=ERRORS)
def events(
    state: ServicesDep,
    caller: CallerDep,
    correlation_id: Annotated[str, Query(min_length=1, max_length=200, description="The journey's correlation id.")],
) -> Events:
    """Every raw event with this correlation id across the raw tables, and the dead letters carrying it."""
    caller.require(Role.analyst, "drilling down to raw events")
    scope = caller.scope
    catalog = load_catalog(state.settings)
    if scope.countries is None:
        drill = events_by_correlation_id(catalog, state.settings, correlation_id, scope, None)
    else:
        with state.builds.current().cursor() as con:
            drill = events_by_correlation_id(catalog, state.settings, correlation_id, scope, con)
    return Events(
        correlation_id=drill.correlation_id,
        events=drill.events,
        dead_letters=drill.dead_letters,
        dead_letters_visible=drill.dead_letters_visible,
        snapshots={name: str(snapshot) for name, snapshot in drill.snapshots.items()},
    )
