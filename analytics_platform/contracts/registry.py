"""The in-repo schema registry: which schema is event type T version V, and may version V+1 exist.

Schemas are Avro record schemas (``<schema dir>/<event_type>/v<N>.avsc``) of the whole envelope.
Avro, not JSON Schema, because its reader/writer resolution rules are what Confluent Schema
Registry's BACKWARD/FORWARD/FULL modes are defined by, and Apache Avro ships the checker; JSON
Schema compatibility depends on open or closed content models and surprises producers. The wire
format stays JSON (fast bulk decoding): a message is the JSON object the schema describes, with
``["null", T]`` fields optional and ``decimal`` fields as JSON numbers.

Payload fields may carry quality rules the batch gates enforce, as an ``x-checks`` list:
``non_negative`` (numbers) and ``currency_code`` (ISO 4217 strings).

Any field (envelope or payload) that identifies a person is marked ``"pii": true`` (an Avro custom
property, which resolution and the compatibility checks ignore): every non-production copy replaces it
with a keyed pseudonym (:mod:`analytics_platform.security.pseudonymize`), and erasure finds a user by it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import avro.errors
import avro.schema
import yaml

from analytics_platform.contracts.compatibility import (
    CompatibilityMode,
    Incompatibility,
    check_compatibility,
    check_storage_evolution,
)
from analytics_platform.contracts.envelope import ENVELOPE, TOPIC_PREFIX
from analytics_platform.contracts.types import AVRO_PRIMITIVE_KINDS, FieldKind
from analytics_platform.exceptions import SchemaRegistryError, UnknownSchemaVersion

DEFAULT_SCHEMA_DIR = Path(__file__).parent / "schemas"
COMPATIBILITY_FILE = "compatibility.yaml"
FIELD_CHECKS = frozenset({"non_negative", "currency_code"})
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


@dataclass(frozen=True)
class PayloadField:
    """One payload field as storage and the gates see it."""

    name: str
    kind: FieldKind
    required: bool
    precision: int = 0
    scale: int = 0
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaVersion:
    """One ``v<N>.avsc`` file."""

    event_type: str
    version: int
    schema: dict[str, Any]
    path: Path
    payload: tuple[PayloadField, ...]
    pii: tuple[str, ...] = ()  # the fields marked "pii": envelope names, payload fields as payload.<name>

    @property
    def required_payload_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.payload if f.required)


@dataclass(frozen=True, eq=False)
class Contract:
    """Every version of one event type's schema and the compatibility mode new versions must keep."""

    event_type: str
    versions: dict[int, SchemaVersion]
    compatibility: CompatibilityMode

    @property
    def topic(self) -> str:
        return f"{TOPIC_PREFIX}{self.event_type}"

    @property
    def latest(self) -> SchemaVersion:
        return self.versions[max(self.versions)]

    def version(self, version: int) -> SchemaVersion:
        try:
            return self.versions[version]
        except KeyError:
            known = ", ".join(str(v) for v in sorted(self.versions))
            raise UnknownSchemaVersion(
                f"{self.event_type} has no schema version {version} (known: {known}); "
                f"add {self.event_type}/v{version}.avsc to the registry and run `analytics-platform schemas check`"
            ) from None

    @functools.cached_property
    def storage_fields(self) -> tuple[PayloadField, ...]:
        """Every payload field any version declared (the raw table's payload columns), newest type wins.

        Storage rules only allow promotions, so the newest type can hold every older value. A field
        is required in storage only if every version requires it.
        """
        merged: dict[str, PayloadField] = {}
        for version in sorted(self.versions):
            for payload_field in self.versions[version].payload:
                merged[payload_field.name] = payload_field
        required_everywhere = {
            name for name in merged if all(name in v.required_payload_fields for v in self.versions.values())
        }
        return tuple(
            PayloadField(f.name, f.kind, f.name in required_everywhere, f.precision, f.scale, f.checks)
            for f in merged.values()
        )

    @functools.cached_property
    def pii_fields(self) -> tuple[str, ...]:
        """Every field any version marked ``"pii": true`` (``user_id``, ``payload.<name>``), in schema order."""
        return tuple(dict.fromkeys(name for v in sorted(self.versions) for name in self.versions[v].pii))

    @functools.cached_property
    def _problems(self) -> list[VersionProblem]:
        return self._check()

    def problems(self) -> list[VersionProblem]:
        """Every version checked against its predecessors under the declared mode and the storage rule."""
        return list(self._problems)

    def _check(self) -> list[VersionProblem]:
        found: list[VersionProblem] = []
        ordered = sorted(self.versions)
        for index, version in enumerate(ordered[1:], start=1):
            previous = [(v, self.versions[v].schema) for v in ordered[:index]]
            new = self.versions[version].schema
            problems = check_compatibility(new, previous, self.compatibility) + check_storage_evolution(new, previous)
            found += [VersionProblem(self.event_type, version, problem) for problem in problems]
        return found


@dataclass(frozen=True)
class VersionProblem:
    """Why ``<event_type>/v<version>.avsc`` may not be published."""

    event_type: str
    version: int
    problem: Incompatibility

    def __str__(self) -> str:
        return f"{self.event_type} v{self.version}: {self.problem}"


@dataclass(frozen=True)
class SchemaRegistry:
    """All contracts of one schema directory."""

    path: Path
    contracts: dict[str, Contract] = field(default_factory=dict)

    def contract(self, event_type: str) -> Contract:
        try:
            return self.contracts[event_type]
        except KeyError:
            known = ", ".join(sorted(self.contracts))
            raise KeyError(f"unknown event_type {event_type!r}; the registry at {self.path} knows: {known}") from None

    def contract_for_topic(self, topic: str) -> Contract:
        name = topic.removeprefix(TOPIC_PREFIX)
        if not topic.startswith(TOPIC_PREFIX) or name not in self.contracts:
            known = ", ".join(c.topic for c in self.contracts.values())
            raise KeyError(f"unknown event topic {topic!r}; known topics: {known}")
        return self.contracts[name]

    def __iter__(self) -> Iterator[Contract]:
        return iter(self.contracts[name] for name in sorted(self.contracts))

    def problems(self) -> list[VersionProblem]:
        return [problem for contract in self for problem in contract.problems()]


def _kind(avro_type: Any, where: str) -> tuple[FieldKind, bool, int, int]:
    """(kind, required, precision, scale) of a payload field's Avro type."""
    required = True
    if isinstance(avro_type, list):
        members = [t for t in avro_type if t != "null"]
        if len(members) != 1 or len(avro_type) != 2:
            raise SchemaRegistryError(f'{where}: unions are only supported as ["null", T] (an optional field)')
        avro_type, required = members[0], False
    if isinstance(avro_type, dict) and avro_type.get("logicalType") == "decimal":
        if "precision" not in avro_type:
            raise SchemaRegistryError(f'{where}: a decimal needs "precision" (and "scale"), e.g. 12 and 2')
        return "decimal", required, int(avro_type["precision"]), int(avro_type.get("scale", 0))
    if isinstance(avro_type, str) and avro_type in AVRO_PRIMITIVE_KINDS:
        return AVRO_PRIMITIVE_KINDS[avro_type], required, 0, 0
    raise SchemaRegistryError(
        f"{where}: type {json.dumps(avro_type)} is not supported in payloads; use string, int, long, double, "
        'boolean or a bytes decimal (optional as ["null", T] with "default": null)'
    )


def _read_version(event_type: str, version: int, path: Path) -> SchemaVersion:
    try:
        schema = json.loads(path.read_text())
        avro.schema.parse(json.dumps(schema))
    except (json.JSONDecodeError, avro.errors.AvroException) as error:
        raise SchemaRegistryError(f"{path} is not a valid Avro schema: {error}") from error
    fields = {f["name"]: f for f in schema.get("fields", [])}
    if schema.get("type") != "record" or list(fields) != list(ENVELOPE):
        raise SchemaRegistryError(
            f"{path}: an event schema is a record whose fields are exactly the envelope "
            f"{', '.join(ENVELOPE)} in that order; found {', '.join(fields) or 'none'}"
        )
    for name, expected in ENVELOPE.items():
        actual = fields[name]["type"]
        actual_name = actual.get("type") if isinstance(actual, dict) else actual
        if actual_name != expected:
            raise SchemaRegistryError(f"{path}: envelope field {name} must be {expected}, not {json.dumps(actual)}")
    payload = []
    pii = [name for name in fields if _is_pii(fields[name], f"{path}: {name}")]
    for payload_field in fields["payload"]["type"]["fields"]:
        where = f"{path}: payload.{payload_field['name']}"
        kind, required, precision, scale = _kind(payload_field["type"], where)
        checks = tuple(payload_field.get("x-checks", ()))
        if unknown := set(checks) - FIELD_CHECKS:
            raise SchemaRegistryError(f"{where}: unknown x-checks {sorted(unknown)}; known: {sorted(FIELD_CHECKS)}")
        payload.append(PayloadField(payload_field["name"], kind, required, precision, scale, checks))
        if _is_pii(payload_field, where):
            pii.append(f"payload.{payload_field['name']}")
    return SchemaVersion(event_type, version, schema, path, tuple(payload), tuple(pii))


def _is_pii(avro_field: dict[str, Any], where: str) -> bool:
    marked = avro_field.get("pii", False)
    if not isinstance(marked, bool):
        raise SchemaRegistryError(f'{where}: "pii" must be true or false, not {json.dumps(marked)}')
    return marked


def _compatibility_modes(path: Path) -> tuple[CompatibilityMode, dict[str, CompatibilityMode]]:
    config_path = path / COMPATIBILITY_FILE
    config = cast(dict[str, Any], yaml.safe_load(config_path.read_text()) or {}) if config_path.exists() else {}
    if not isinstance(config, dict) or not isinstance(config.get("subjects") or {}, dict):
        raise SchemaRegistryError(
            f"{config_path} must be a mapping like `default: BACKWARD` and `subjects: {{purchase: FULL}}`"
        )
    try:
        default = CompatibilityMode(config.get("default", "BACKWARD"))
        overrides = {name: CompatibilityMode(mode) for name, mode in (config.get("subjects") or {}).items()}
    except ValueError as error:
        modes = ", ".join(m.value for m in CompatibilityMode)
        raise SchemaRegistryError(f"{config_path}: {error}; modes are {modes}") from error
    return default, overrides


@functools.lru_cache(maxsize=8)
def _load(path: Path, _signature: tuple[tuple[str, int], ...]) -> SchemaRegistry:
    default, overrides = _compatibility_modes(path)
    contracts = {}
    for directory in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        versions = {}
        for file in directory.iterdir():
            if match := _VERSION_FILE.match(file.name):
                versions[int(match.group(1))] = _read_version(directory.name, int(match.group(1)), file)
        if not versions:
            raise SchemaRegistryError(f"{directory} holds no v1.avsc; an event type needs at least one schema version")
        if sorted(versions) != list(range(1, len(versions) + 1)):
            raise SchemaRegistryError(
                f"{directory}: versions must be v1.avsc, v2.avsc, ... without gaps; found "
                f"{', '.join(f'v{v}' for v in sorted(versions)) or 'none'}"
            )
        contracts[directory.name] = Contract(directory.name, versions, overrides.get(directory.name, default))
    if unknown := set(overrides) - set(contracts):
        raise SchemaRegistryError(f"{path / COMPATIBILITY_FILE}: subjects {sorted(unknown)} have no schema directory")
    return SchemaRegistry(path, contracts)


def load_registry(path: Path = DEFAULT_SCHEMA_DIR) -> SchemaRegistry:
    """Read a schema directory (cached until one of its files changes)."""
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise SchemaRegistryError(
            f"schema directory {path} does not exist; point PLATFORM_SCHEMA_DIR at a directory of "
            "<event_type>/v<N>.avsc files (default: the package's contracts/schemas)"
        )
    signature = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()))
    return _load(path, signature)
