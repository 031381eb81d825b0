"""Replay requests: what is valid, which requests are the same (one id), and the run each one asks for."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from analytics_platform.exceptions import InvalidRequestError
from analytics_platform.serving.replays import (
    DEAD_LETTERS_JOB,
    REPLAY_TAG,
    REREAD_JOB,
    DaysReplay,
    DeadLettersReplay,
    OffsetsReplay,
    ReplayRequest,
    launch_plan,
    replay_id,
)
from analytics_platform.settings import get_settings

pytestmark = pytest.mark.fast

REQUEST: TypeAdapter[OffsetsReplay | DeadLettersReplay] = TypeAdapter(ReplayRequest)


def test_the_same_request_however_written_has_one_id() -> None:
    one = REQUEST.validate_python(
        {
            "kind": "offsets",
            "topic": "events.purchase",
            "start_time": "2026-11-01T10:00:00Z",
            "end_time": "2026-11-01T11:00:00Z",
        }
    )
    same = REQUEST.validate_python(
        {
            "end_time": "2026-11-01T12:00:00+01:00",
            "topic": "events.purchase",
            "kind": "offsets",
            "start_time": "2026-11-01T11:00:00+01:00",
        }
    )
    other = REQUEST.validate_python(
        {
            "kind": "offsets",
            "topic": "events.purchase",
            "start_time": "2026-11-01T10:00:00Z",
            "end_time": "2026-11-01T11:00:01Z",
        }
    )
    assert replay_id(one) == replay_id(same) != replay_id(other)
    assert replay_id(one).startswith("rp-") and len(replay_id(one)) == 19
    letters = [
        REQUEST.validate_python({"kind": "dead_letters", "messages": m})
        for m in (["a:0:1", "a:0:2"], ["a:0:2", "a:0:1", "a:0:1"])
    ]
    assert replay_id(letters[0]) == replay_id(letters[1])  # the same set of messages


@pytest.mark.parametrize(
    ("request_body", "says"),
    [
        ({"kind": "offsets", "topic": "events.nope", "partitions": {"0": [0, 1]}}, "unknown topic 'events.nope'"),
        ({"kind": "offsets", "topic": "events.purchase"}, "either `partitions`"),
        (
            {
                "kind": "offsets",
                "topic": "events.purchase",
                "partitions": {"0": [0, 1]},
                "start_time": "2026-11-01T00:00:00Z",
                "end_time": "2026-11-02T00:00:00Z",
            },
            "either `partitions`",
        ),
        ({"kind": "offsets", "topic": "events.purchase", "start_time": "2026-11-01T00:00:00Z"}, "either `partitions`"),
        ({"kind": "offsets", "topic": "events.purchase", "partitions": {"0": [5, 5]}}, "not an offset range"),
        (
            {
                "kind": "offsets",
                "topic": "events.purchase",
                "start_time": "2026-11-02T00:00:00Z",
                "end_time": "2026-11-01T00:00:00Z",
            },
            "`start_time` must be before",
        ),
        (
            {
                "kind": "offsets",
                "topic": "events.purchase",
                "start_time": "2026-11-01T00:00:00",
                "end_time": "2026-11-02T00:00:00Z",
            },
            "time zone",
        ),
        ({"kind": "dead_letters", "messages": ["events.purchase:x:1"]}, "is not topic:partition:offset"),
        ({"kind": "days", "first": "2026-11-02", "last": "2026-11-01"}, "`first` must not be after `last`"),
        (
            {
                "kind": "days",
                "first": "2026-11-01",
                "last": "2026-11-01",
                "as_of": "2026-11-02T00:00:00Z",
                "as_of_snapshot": 1,
            },
            "not both",
        ),
        ({"kind": "days", "first": "2026-11-01", "last": "2026-11-01", "typo": 1}, "Extra inputs are not permitted"),
        ({"kind": "everything"}, "does not match any of the expected tags"),
    ],
)
def test_invalid_requests_say_what_to_change(request_body: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says.replace("(", r"\(")):
        REQUEST.validate_python(request_body)


def test_each_request_asks_for_its_job_with_its_id() -> None:
    settings = get_settings()
    offsets = OffsetsReplay(kind="offsets", topic="events.purchase", partitions={2: (5, 9), 0: (0, 3)})
    plan = launch_plan(settings, offsets, attempt=1)
    config = plan.run_config["ops"]["reread_kafka_range"]["config"]
    assert plan.job_name == REREAD_JOB and plan.tags[REPLAY_TAG] == replay_id(offsets)
    assert json.loads(config["ranges"]) == {"0": [0, 3], "2": [5, 9]} and config["replay_id"] == replay_id(offsets)
    letters = DeadLettersReplay(kind="dead_letters", check="known_version")
    plan = launch_plan(settings, letters, attempt=2)
    assert plan.job_name == DEAD_LETTERS_JOB and plan.tags["analytics_platform/replay_attempt"] == "2"
    assert plan.run_config["ops"]["replay_dead_letters_op"]["config"] == {
        "topic": "",
        "check": "known_version",
        "messages": [],
    }


def test_a_day_range_without_partitions_is_refused() -> None:
    request = DaysReplay(kind="days", first=date(2020, 1, 1), last=date(2020, 1, 2))
    with pytest.raises(InvalidRequestError, match="no daily partitions between 2020-01-01 and 2020-01-02"):
        launch_plan(get_settings(), request, attempt=1)
