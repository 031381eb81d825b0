"""The PLATFORM_S3_* settings map to pyiceberg's S3 FileIO properties and DuckDB's S3 secret, and stay secret."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from analytics_platform.exceptions import ConfigError
from analytics_platform.lakehouse.storage import FSSPEC_FILE_IO, duckdb_secret_sql, fileio_properties
from analytics_platform.settings import Settings

pytestmark = pytest.mark.fast

SECRET = "s3cr3t-do-not-print"
MINIO = {
    "warehouse": "s3://warehouse/lake",
    "s3_endpoint": "http://minio:9000",
    "s3_access_key_id": "platform",
    "s3_secret_access_key": SECRET,
}


def test_a_local_warehouse_needs_no_object_storage_configuration() -> None:
    settings = Settings(s3_endpoint="http://minio:9000")
    assert fileio_properties(settings) == {}
    assert duckdb_secret_sql(settings) is None


def test_minio_maps_to_path_style_pyiceberg_properties_and_a_duckdb_secret() -> None:
    settings = Settings(**MINIO)  # type: ignore[arg-type]
    assert fileio_properties(settings) == {
        "s3.endpoint": "http://minio:9000",
        "s3.region": "us-east-1",
        "s3.force-virtual-addressing": "false",
        "s3.access-key-id": "platform",
        "s3.secret-access-key": SECRET,
    }
    assert duckdb_secret_sql(settings) == (
        "create or replace temporary secret platform_warehouse (type s3, provider config, region 'us-east-1', "
        "url_style 'path', endpoint 'minio:9000', use_ssl false, key_id 'platform', secret 's3cr3t-do-not-print')"
    )


def test_aws_defaults_to_virtual_hosts_tls_and_the_credential_chain() -> None:
    settings = Settings(warehouse="s3://bucket/prefix", s3_region="eu-west-1")
    assert fileio_properties(settings) == {"s3.region": "eu-west-1", "s3.force-virtual-addressing": "true"}
    assert duckdb_secret_sql(settings) == (
        "create or replace temporary secret platform_warehouse "
        "(type s3, provider config, region 'eu-west-1', url_style 'vhost')"
    )


def test_a_cold_warehouse_on_s3_needs_the_configuration_too() -> None:
    settings = Settings(raw_cold_warehouse="s3://cold/raw", s3_region="eu-west-1")
    assert fileio_properties(settings)["s3.region"] == "eu-west-1"
    assert duckdb_secret_sql(settings) is not None


@pytest.mark.parametrize(
    ("sse", "key", "expected"),
    [
        ("AES256", None, {"s3.server-side-encryption": "AES256"}),
        ("aws:kms", None, {"s3.server-side-encryption": "aws:kms"}),
        ("aws:kms", "alias/lake", {"s3.server-side-encryption": "aws:kms", "s3.sse-kms-key-id": "alias/lake"}),
    ],
)
def test_server_side_encryption_selects_the_fileio_that_sends_it(sse: str, key: str | None, expected: dict) -> None:
    settings = Settings(**MINIO, s3_sse=sse, s3_sse_kms_key_id=key)  # type: ignore[arg-type]
    properties = fileio_properties(settings)
    assert properties["py-io-impl"] == FSSPEC_FILE_IO
    assert {name: value for name, value in properties.items() if "sse" in name or "encryption" in name} == expected
    secret = duckdb_secret_sql(settings)
    assert secret is not None and (f"kms_key_id '{key}'" in secret) == (key is not None)


def test_a_kms_key_without_kms_encryption_is_refused() -> None:
    with pytest.raises(ValidationError, match="PLATFORM_S3_SSE=aws:kms"):
        Settings(s3_sse="AES256", s3_sse_kms_key_id="alias/lake")


def test_an_access_key_without_its_secret_is_refused() -> None:
    settings = Settings(warehouse="s3://warehouse/lake", s3_access_key_id="platform")
    with pytest.raises(ConfigError, match="PLATFORM_S3_SECRET_ACCESS_KEY"):
        fileio_properties(settings)


def test_an_endpoint_without_a_scheme_is_refused() -> None:
    settings = Settings(warehouse="s3://warehouse/lake", s3_endpoint="minio:9000")
    with pytest.raises(ConfigError, match="PLATFORM_S3_ENDPOINT"):
        duckdb_secret_sql(settings)


def test_quotes_in_values_cannot_break_out_of_the_secret_statement() -> None:
    settings = Settings(**{**MINIO, "s3_secret_access_key": "a'b"})  # type: ignore[arg-type]
    assert "secret 'a''b'" in (duckdb_secret_sql(settings) or "")


def test_the_secret_key_is_not_in_the_settings_repr_or_their_log(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(**MINIO)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("analytics_platform").info("settings: %s", settings)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in caplog.text
    assert SECRET not in settings.model_dump_json()
