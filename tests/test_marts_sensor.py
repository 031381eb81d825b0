"""The marts sensor requests one build per new set of raw snapshots, and none while nothing changed."""

from __future__ import annotations

import dagster as dg

from analytics_platform.definitions import marts_sensor
from analytics_platform.defs.resources import PlatformResource
from analytics_platform.ingest.batch import ingest_until_caught_up
from analytics_platform.instance import get_instance
from analytics_platform.settings import Settings
from tests.helpers import produce


def test_one_build_request_per_new_raw_snapshot(broker: Settings) -> None:
    instance = get_instance(broker)

    def evaluate(cursor: str | None = None) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"platform": PlatformResource()}
        ) as context:
            result = marts_sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    assert not evaluate().run_requests  # nothing landed yet: nothing to build

    produce(broker, 500, seed=1)
    ingest_until_caught_up(broker, "events.purchase")
    first = evaluate()
    assert len(first.run_requests or []) == 1
    assert not evaluate(first.cursor).run_requests  # same raw snapshots: already requested

    produce(broker, 500, seed=2)
    ingest_until_caught_up(broker, "events.purchase")
    second = evaluate(first.cursor)
    assert len(second.run_requests or []) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
