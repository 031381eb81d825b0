"""The in-repo schema registry: the repo's schemas, `schemas check` on evolved copies, and loading errors.

Every evolution test copies the repo's schema directory into the test's own temp folder, because
``load_registry`` caches by path and file mtimes: a shared folder edited in place could be served stale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analytics_platform.contracts.compatibility import CompatibilityMode
from analytics_platform.contracts.registry import DEFAULT_SCHEMA_DIR, load_registry
from analytics_platform.exceptions import SchemaRegistryError

pytestmark = pytest.mark.fast

CLI = str(Path(sys.executable).parent / "analytics-platform")
EVENT_TYPES = {
    "user_visit",
    "add_to_cart",
    "checkout",
    "purchase",
    "app_error",
    "user_profile_changed",
    "product_changed",
}
Schema = dict[str, Any]


def payload_fields(schema: Schema) -> list[dict[str, Any]]:
    """The payload record's field list of an envelope schema (mutable: edits change the schema)."""
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    fields: list[dict[str, Any]] = payload["type"]["fields"]
    return fields


def schema_copy(
    tmp_path: Path, change: Callable[[Schema], None] | None = None, compatibility: str | None = None
) -> Path:
    """The repo's schema directory copied under ``tmp_path``, plus ``purchase/v2.avsc`` = v1 after ``change``.

    ``compatibility`` replaces ``compatibility.yaml`` when given.
    """
    schema_dir = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMA_DIR, schema_dir)
    if change is not None:
        schema = json.loads((schema_dir / "purchase" / "v1.avsc").read_text())
        change(schema)
        (schema_dir / "purchase" / "v2.avsc").write_text(json.dumps(schema, indent=2))
    if compatibility is not None:
        (schema_dir / "compatibility.yaml").write_text(compatibility)
    return schema_dir


def schemas_check(schema_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``analytics-platform schemas check`` against ``schema_dir``."""
    env = {**os.environ, "PLATFORM_SCHEMA_DIR": str(schema_dir)}
    return subprocess.run([CLI, "schemas", "check"], capture_output=True, text=True, timeout=120, env=env)


def add_optional_coupon(schema: Schema) -> None:
    payload_fields(schema).append({"name": "coupon_code", "type": ["null", "string"], "default": None})


def item_count_as_string(schema: Schema) -> None:
    next(f for f in payload_fields(schema) if f["name"] == "item_count")["type"] = "string"


def add_required_loyalty_tier(schema: Schema) -> None:
    payload_fields(schema).append({"name": "loyalty_tier", "type": "string"})


def remove_payment_method(schema: Schema) -> None:
    fields = payload_fields(schema)
    fields[:] = [f for f in fields if f["name"] != "payment_method"]


def test_repo_registry_has_every_event_type_at_v1_backward_and_no_problems() -> None:
    registry = load_registry()

    assert set(registry.contracts) == EVENT_TYPES
    for contract in registry:
        assert set(contract.versions) == {1}, contract.event_type
        assert contract.compatibility is CompatibilityMode.BACKWARD, contract.event_type
        assert contract.topic == f"events.{contract.event_type}"
    assert registry.problems() == []


def test_check_accepts_an_added_optional_field(tmp_path: Path) -> None:
    result = schemas_check(schema_copy(tmp_path, add_optional_coupon))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "purchase: v1, v2 (BACKWARD): ok" in result.stdout.splitlines()
    assert "checkout: v1 (BACKWARD): ok" in result.stdout.splitlines()


def test_check_rejects_a_type_change_naming_the_field(tmp_path: Path) -> None:
    result = schemas_check(schema_copy(tmp_path, item_count_as_string))

    assert result.returncode == 1
    assert "purchase: v1, v2 (BACKWARD): FAILED" in result.stdout
    assert "purchase v2: payload.item_count: type changed" in result.stdout
    assert "(vs v1, BACKWARD)" in result.stdout
    assert "(vs v1, storage)" in result.stdout  # the raw table cannot hold both types either
    assert "incompatible change(s)" in result.stderr


def test_check_rejects_a_required_field_added_without_default(tmp_path: Path) -> None:
    result = schemas_check(schema_copy(tmp_path, add_required_loyalty_tier))

    assert result.returncode == 1
    assert "purchase v2: payload.loyalty_tier: added field payload.loyalty_tier has no default" in result.stdout
    assert '"default": null' in result.stdout  # says how to make it compatible


def test_removing_a_required_field_breaks_forward_but_not_backward(tmp_path: Path) -> None:
    forward = schemas_check(
        schema_copy(tmp_path / "forward", remove_payment_method, "default: BACKWARD\nsubjects: {purchase: FORWARD}\n")
    )
    backward = schemas_check(schema_copy(tmp_path / "backward", remove_payment_method))

    assert forward.returncode == 1
    assert "purchase: v1, v2 (FORWARD): FAILED" in forward.stdout
    assert "purchase v2: payload.payment_method: removed field payload.payment_method" in forward.stdout
    assert "(vs v1, FORWARD)" in forward.stdout
    assert "checkout: v1 (BACKWARD): ok" in forward.stdout  # the override is per subject
    # Confluent semantics: a BACKWARD reader (the new schema) simply ignores the field old data still has.
    assert backward.returncode == 0, backward.stdout + backward.stderr
    assert "purchase: v1, v2 (BACKWARD): ok" in backward.stdout


def test_a_version_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    schema_dir = schema_copy(tmp_path)
    (schema_dir / "purchase" / "v2.avsc").write_text("{not json")

    with pytest.raises(SchemaRegistryError, match=r"purchase/v2\.avsc is not a valid Avro schema"):
        load_registry(schema_dir)


def test_a_gap_in_versions_is_named(tmp_path: Path) -> None:
    schema_dir = schema_copy(tmp_path)
    shutil.copy(schema_dir / "purchase" / "v1.avsc", schema_dir / "purchase" / "v3.avsc")

    with pytest.raises(SchemaRegistryError) as raised:
        load_registry(schema_dir)

    assert "without gaps" in str(raised.value)
    assert "found v1, v3" in str(raised.value)
    assert str(schema_dir / "purchase") in str(raised.value)


def test_an_unsupported_payload_type_names_the_field_and_the_supported_types(tmp_path: Path) -> None:
    def add_map(schema: Schema) -> None:
        payload_fields(schema).append({"name": "attributes", "type": {"type": "map", "values": "string"}})

    schema_dir = schema_copy(tmp_path, add_map)

    with pytest.raises(SchemaRegistryError) as raised:
        load_registry(schema_dir)

    message = str(raised.value)
    assert f"{schema_dir / 'purchase' / 'v2.avsc'}: payload.attributes" in message
    assert "is not supported in payloads" in message
    assert "use string, int, long, double, boolean or a bytes decimal" in message


@pytest.mark.parametrize("config", ["default: SIDEWAYS\n", "default: BACKWARD\nsubjects: {purchase: SIDEWAYS}\n"])
def test_an_unknown_compatibility_mode_lists_the_valid_ones(tmp_path: Path, config: str) -> None:
    schema_dir = schema_copy(tmp_path, compatibility=config)

    with pytest.raises(SchemaRegistryError) as raised:
        load_registry(schema_dir)

    message = str(raised.value)
    assert "compatibility.yaml" in message
    assert "SIDEWAYS" in message
    assert "modes are " + ", ".join(mode.value for mode in CompatibilityMode) in message
