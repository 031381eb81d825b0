"""What of a URL may be shown: never a password, wherever it sits in the text."""

from __future__ import annotations

import pytest

from analytics_platform.security.redaction import redact, url_origin

pytestmark = pytest.mark.fast

MASKED = {
    "postgresql+psycopg2://writer:s3cret@db:5432/iceberg": "postgresql+psycopg2://writer:***@db:5432/iceberg",
    "redis://:s3cret@cache:6379/0": "redis://:***@cache:6379/0",
    # An unencoded "@" in the password: masked up to the last "@" before the host.
    "postgresql://writer:s3c@ret@db/iceberg?sslmode=require": "postgresql://writer:***@db/iceberg?sslmode=require",
    "connecting to https://user:s3cret@registry:8081 and postgresql://w:s3cret@db/x failed": (
        "connecting to https://user:***@registry:8081 and postgresql://w:***@db/x failed"
    ),
    "invalid dsn: host=db user=writer password=s3cret dbname=iceberg": (
        "invalid dsn: host=db user=writer password=*** dbname=iceberg"
    ),
    "host=db PASSWORD = 's3 \\' cret' port=5432": "host=db PASSWORD = *** port=5432",
}
UNCHANGED = [
    "postgresql+psycopg2://postgres@127.0.0.1:5432/iceberg",  # no password
    "sqlite:////var/lib/platform/catalog.db",
    "http://schema-registry:8081/subjects",
    "http://dagster:3000/runs/abc@def",  # an "@" in the path is not a password
    "the password is not set",
]


@pytest.mark.parametrize(("text", "shown"), MASKED.items(), ids=range(len(MASKED)))
def test_redact_masks_every_password(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert "s3" not in redact(text)


@pytest.mark.parametrize("text", UNCHANGED)
def test_redact_leaves_text_without_passwords_as_it_is(text: str) -> None:
    assert redact(text) == text


def test_url_origin_drops_credentials_path_and_query() -> None:
    assert url_origin("https://bot:s3cret@hooks.slack.com/services/T1/B2/s3cret?x=1") == "https://hooks.slack.com"
    assert url_origin("http://[::1]:9093/api/v2/alerts") == "http://[::1]:9093"
