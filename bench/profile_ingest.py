"""Where platform ingest spends its time: pyinstrument over the sensor-driven path, printed as a call tree.

    python bench/profile_ingest.py [--events N]

Produces N events to a fresh broker, then profiles the same in-process sensor ticks and runs that
``bench/run.py`` times (imports included, as a fresh process pays them). This is how the per-tick
end-of-log probe, the reads' garbage collections and the per-run costs were found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, isolate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()

    from pyinstrument import Profiler

    from analytics_platform.kafka import broker
    from analytics_platform.kafka.admin import create_topics
    from analytics_platform.kafka.producer import publish
    from analytics_platform.settings import get_settings
    from analytics_platform.sim.generator import generate_events

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as home:
        isolate(Path(home), free_port())
        settings = get_settings()
        broker.start(settings)
        try:
            create_topics(settings, settings.topic_partitions)
            publish(generate_events(args.events, seed=42, days=3), settings)
            profiler = Profiler(interval=0.005)
            with profiler:
                from analytics_platform.local.instance import get_instance
                from analytics_platform.local.orchestration import tick_ingest_sensors

                instance = get_instance(settings)
                while ticked := tick_ingest_sensors(settings, instance, log_level="ERROR"):
                    assert all(run.success for run in ticked), ticked
        finally:
            broker.stop(settings)
    print(profiler.output_text(unicode=True, color=False))


if __name__ == "__main__":
    main()
