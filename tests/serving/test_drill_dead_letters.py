"""Drill-down by correlation id finds the dead letters whose bytes carry the id, whatever else the bytes
hold (invalid UTF-8, quotes), and no others (real broker, Iceberg and DuckDB)."""

from __future__ import annotations

import json

import pytest

from analytics_platform.ingest.land import ingest_until_caught_up
from analytics_platform.lakehouse.catalog import load_catalog
from analytics_platform.serving.events import events_by_correlation_id, lake_connection
from analytics_platform.serving.metrics import Scope
from analytics_platform.settings import Settings
from tests.helpers import send_raw

pytestmark = pytest.mark.integration

TOPIC = "events.purchase"


def test_dead_letters_carrying_a_correlation_id(broker: Settings) -> None:
    wanted = "journey-7-café"  # non-ASCII: escaped in DuckDB's text form of bytes, matched all the same
    other = "journey-8"
    carrying = json.dumps({"event_type": "purchase", "correlation_id": wanted}, ensure_ascii=False).encode()
    binary = b"\xff\xfe not json " + wanted.encode() + b" \x00"
    send_raw(
        broker,
        TOPIC,
        [
            (carrying, b"u1"),  # fails its contract
            (binary, b"u2"),  # invalid UTF-8 around the id
            (json.dumps({"event_type": "purchase", "correlation_id": other}).encode(), b"u3"),
            (None, None),  # a tombstone: no bytes at all
        ],
    )
    (result,) = ingest_until_caught_up(broker, TOPIC)
    assert result.dead_lettered == 4

    catalog = load_catalog(broker)
    with lake_connection(broker) as lake:
        found = events_by_correlation_id(lake, catalog, broker, wanted, Scope(), None)
        assert sorted(d["raw_value"] for d in found.dead_letters) == sorted(
            value.decode("utf-8", errors="replace") for value in (carrying, binary)
        )
        (only,) = events_by_correlation_id(lake, catalog, broker, other, Scope(), None).dead_letters
        assert other in only["raw_value"] and only["reason"]
        assert events_by_correlation_id(lake, catalog, broker, "journey", Scope(), None).dead_letters  # a substring
        assert not events_by_correlation_id(lake, catalog, broker, "no such id", Scope(), None).dead_letters
