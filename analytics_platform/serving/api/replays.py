"""``/v1/replays``: re-run part of the pipeline from a checkpoint; the same request twice launches one run."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, Field

from analytics_platform.exceptions import UnknownReplayError
from analytics_platform.serving.access import Role
from analytics_platform.serving.api.deps import CallerDep, ServicesDep
from analytics_platform.serving.api.metrics import ERRORS
from analytics_platform.serving.replays import Replay, ReplayRequest, find_replay, request_replay

router = APIRouter(prefix="/v1/replays", tags=["replays"])

EXAMPLES = {
    "offsets": {
        "summary": "Re-read offsets 0..499 of partition 0 from Kafka",
        "value": {"kind": "offsets", "topic": "events.purchase", "partitions": {"0": [0, 500]}},
    },
    "time range": {
        "summary": "Re-read the messages of an hour",
        "value": {
            "kind": "offsets",
            "topic": "events.purchase",
            "start_time": "2026-11-01T10:00:00Z",
            "end_time": "2026-11-01T11:00:00Z",
        },
    },
    "dead letters": {
        "summary": "Replay the dead letters that failed a check, after a fix",
        "value": {"kind": "dead_letters", "check": "known_version"},
    },
    "days": {
        "summary": "Rebuild two days' daily facts from raw as of a known good checkpoint",
        "value": {"kind": "days", "first": "2026-11-01", "last": "2026-11-02", "as_of": "2026-11-03T00:00:00Z"},
    },
}


class ReplayOut(BaseModel):
    id: str = Field(description="The replay's id: a hash of the request, so the same request has the same id.")
    kind: str
    status: str = Field(description="The Dagster run's status: QUEUED, STARTING, STARTED, SUCCESS, FAILURE, ...")
    run_id: str = Field(description="The newest Dagster run of this replay.")
    run_url: str = Field(description="That run in the Dagster UI.")
    attempts: int = Field(description="Runs launched for this replay (a request after a failed run launches again).")
    counts: dict[str, Any] = Field(
        description="What the run did, once it reports it: for `offsets`, how many offsets were already landed, "
        "already dead-lettered, landed, dead-lettered or left to ingestion; for `dead_letters`, how many were "
        "chosen, landed and still fail; for `days`, the partitions rebuilt."
    )
    error: str | None = Field(description="Why the run failed, and what to do.")
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def of(cls, replay: Replay) -> ReplayOut:
        return cls(
            id=replay.id,
            kind=replay.kind,
            status=replay.status,
            run_id=replay.run_id,
            run_url=replay.run_url,
            attempts=replay.attempts,
            counts=replay.counts,
            error=replay.error,
            started_at=replay.started_at,
            ended_at=replay.ended_at,
        )


@router.post(
    "",
    response_model=ReplayOut,
    status_code=202,
    responses=ERRORS | {200: {"model": ReplayOut, "description": "The same request was made before: its replay."}},
)
def create_replay(
    state: ServicesDep,
    caller: CallerDep,
    response: Response,
    request: Annotated[ReplayRequest, Body(openapi_examples=EXAMPLES)],
) -> ReplayOut:
    """Launch a replay (202), or return the one this same request launched before (200); poll `Location`.

    Needs an operator key. A replay whose last run failed is launched again."""
    caller.require(Role.operator, "launching a replay")
    replay, launched = request_replay(state.settings, state.instance(), request, state.launch_replay)
    response.status_code = 202 if launched else 200
    response.headers["Location"] = f"/v1/replays/{replay.id}"
    return ReplayOut.of(replay)


@router.get("/{replay_id}", response_model=ReplayOut, responses=ERRORS | {404: {"model": ERRORS[422]["model"]}})
def get_replay(
    state: ServicesDep,
    caller: CallerDep,
    replay_id: Annotated[str, Path(pattern=r"^rp-[0-9a-f]{16}$", description="The id POST returned.")],
) -> ReplayOut:
    """A replay's status and, once its run reports them, its counts."""
    caller.require(Role.analyst, "reading a replay's status")
    replay = find_replay(state.settings, state.instance(), replay_id)
    if replay is None:
        raise UnknownReplayError(f"no replay {replay_id}: POST the request to /v1/replays to launch it")
    return ReplayOut.of(replay)
