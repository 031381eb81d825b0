"""Schema changes against each compatibility mode and the storage rule: what passes, and which field is blamed."""

from __future__ import annotations

from typing import Any

import pytest

from analytics_platform.contracts.compatibility import (
    CompatibilityMode,
    Incompatibility,
    check_compatibility,
    check_storage_evolution,
)

pytestmark = pytest.mark.fast

Field = dict[str, Any]

ORDER_ID: Field = {"name": "order_id", "type": "string"}
REVENUE: Field = {"name": "revenue", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}}
ITEM_COUNT: Field = {"name": "item_count", "type": "int"}
BASE = [ORDER_ID, REVENUE, ITEM_COUNT]
OPTIONAL_COUPON: Field = {"name": "coupon", "type": ["null", "string"], "default": None}
REQUIRED_COUPON: Field = {"name": "coupon", "type": "string"}
CURRENCY: Field = {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD"]}}


def purchase(*payload: Field, nullable_payload: bool = False) -> dict[str, Any]:
    """The envelope-shaped record every test evolves: only the payload changes."""
    record = {"type": "record", "name": "PurchasePayload", "fields": list(payload)}
    return {
        "type": "record",
        "name": "Purchase",
        "namespace": "analytics_platform.events",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "schema_version", "type": "int"},
            {"name": "payload", "type": ["null", record] if nullable_payload else record},
        ],
    }


def typed(field: Field, type_: Any, **extra: Any) -> Field:
    return {**field, "type": type_, **extra}


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


# Each change: id -> (v1 payload, v2 payload).
CHANGES: dict[str, tuple[list[Field], list[Field]]] = {
    "add optional field": (BASE, [*BASE, OPTIONAL_COUPON]),
    "add required field": (BASE, [*BASE, REQUIRED_COUPON]),
    "remove optional field": ([*BASE, OPTIONAL_COUPON], BASE),
    "remove required field": (BASE, [ORDER_ID, REVENUE]),
    "int to long": (BASE, [ORDER_ID, REVENUE, typed(ITEM_COUNT, "long")]),
    "long to int": ([ORDER_ID, REVENUE, typed(ITEM_COUNT, "long")], BASE),
    "string to int": (BASE, [typed(ORDER_ID, "int"), REVENUE, ITEM_COUNT]),
    "rename field": (BASE, [{"name": "order_ref", "type": "string"}, REVENUE, ITEM_COUNT]),
    "rename field with alias": (BASE, [{"name": "order_ref", "type": "string", "aliases": ["order_id"]}, *BASE[1:]]),
    "add enum symbol": (
        [*BASE, CURRENCY],
        [*BASE, typed(CURRENCY, {**CURRENCY["type"], "symbols": ["EUR", "USD", "GBP"]})],
    ),
}

# Each mode: change id -> the fields it blames (empty: the change is allowed).
EXPECTED: dict[CompatibilityMode, dict[str, set[str]]] = {
    CompatibilityMode.BACKWARD: {
        "add optional field": set(),
        "add required field": {"payload.coupon"},
        "remove optional field": set(),
        "remove required field": set(),
        "int to long": set(),
        "long to int": {"payload.item_count"},
        "string to int": {"payload.order_id"},
        "rename field": {"payload.order_ref"},
        "rename field with alias": set(),
        "add enum symbol": set(),
    },
    CompatibilityMode.FORWARD: {
        "add optional field": set(),
        "add required field": set(),
        "remove optional field": set(),
        "remove required field": {"payload.item_count"},
        "int to long": {"payload.item_count"},
        "long to int": set(),
        "string to int": {"payload.order_id"},
        "rename field": {"payload.order_id"},
        "rename field with alias": {"payload.order_id"},
        "add enum symbol": {"payload.currency"},
    },
    CompatibilityMode.FULL: {
        "add optional field": set(),
        "add required field": {"payload.coupon"},
        "remove optional field": set(),
        "remove required field": {"payload.item_count"},
        "int to long": {"payload.item_count"},
        "long to int": {"payload.item_count"},
        "string to int": {"payload.order_id"},
        "rename field": {"payload.order_ref", "payload.order_id"},
        "rename field with alias": {"payload.order_id"},
        "add enum symbol": {"payload.currency"},
    },
    CompatibilityMode.NONE: dict.fromkeys(CHANGES, set()),
}


def blamed(problems: list[Incompatibility]) -> set[str]:
    return {problem.field for problem in problems}


@pytest.mark.parametrize(
    ("mode", "change", "fields"),
    [
        pytest.param(mode, change, fields, id=f"{mode}-{change}")
        for mode, table in EXPECTED.items()
        for change, fields in table.items()
    ],
)
def test_a_change_is_allowed_or_blames_the_field(mode: CompatibilityMode, change: str, fields: set[str]) -> None:
    v1, v2 = CHANGES[change]
    problems = check_compatibility(purchase(*v2), [(1, purchase(*v1))], mode)
    assert blamed(problems) == fields
    assert all(problem.against_version == 1 and problem.rule == mode.value for problem in problems)


# v2 added coupon with a default, v3 dropped the default: v3 reads v2 data, but not v1 data (no coupon there).
DEFAULT_DROPPED = [BASE, [*BASE, OPTIONAL_COUPON], [*BASE, {"name": "coupon", "type": ["null", "string"]}]]
# v2 gave item_count a default, v3 removed the field: v2 consumers fill in the default, v1 consumers cannot.
REMOVED_AFTER_DEFAULT = [BASE, [ORDER_ID, REVENUE, typed(ITEM_COUNT, "int", default=0)], [ORDER_ID, REVENUE]]


@pytest.mark.parametrize(
    ("mode", "history", "field"),
    [
        (CompatibilityMode.BACKWARD_TRANSITIVE, DEFAULT_DROPPED, "payload.coupon"),
        (CompatibilityMode.FULL_TRANSITIVE, DEFAULT_DROPPED, "payload.coupon"),
        (CompatibilityMode.FORWARD_TRANSITIVE, REMOVED_AFTER_DEFAULT, "payload.item_count"),
    ],
    ids=str,
)
def test_transitive_modes_check_every_previous_version(
    mode: CompatibilityMode, history: list[list[Field]], field: str
) -> None:
    *previous, (_, new) = [(version, purchase(*payload)) for version, payload in enumerate(history, start=1)]
    latest_only = CompatibilityMode(mode.removesuffix("_TRANSITIVE"))

    assert check_compatibility(new, previous, latest_only) == []
    problems = check_compatibility(new, previous, mode)
    assert [(problem.field, problem.against_version, problem.rule) for problem in problems] == [(field, 1, mode)]


def test_every_problem_is_reported_with_its_own_message() -> None:
    new = purchase(typed(ORDER_ID, "int"), REVENUE, ITEM_COUNT, REQUIRED_COUPON)
    problems = check_compatibility(new, [(1, purchase(*BASE))], CompatibilityMode.BACKWARD)
    by_field = {problem.field: problem.message for problem in problems}
    assert by_field.keys() == {"payload.order_id", "payload.coupon"}
    assert "string" in by_field["payload.order_id"]
    assert '"default": null' in by_field["payload.coupon"]


def test_fields_inside_a_nullable_record_are_named() -> None:
    """Avro's checker only says "reader union lacking writer type: RECORD" here."""
    old, new = purchase(*BASE, nullable_payload=True), purchase(*BASE, REQUIRED_COUPON, nullable_payload=True)
    assert blamed(check_compatibility(new, [(1, old)], CompatibilityMode.BACKWARD)) == {"payload.coupon"}


def test_a_payload_that_may_now_be_null_is_refused_by_backward_but_not_forward() -> None:
    old, new = purchase(*BASE), purchase(*BASE, nullable_payload=True)
    assert check_compatibility(new, [(1, old)], CompatibilityMode.BACKWARD) == []
    assert blamed(check_compatibility(new, [(1, old)], CompatibilityMode.FORWARD)) == {"payload"}


def test_a_renamed_record_is_blamed_on_the_record() -> None:
    new = {**purchase(*BASE), "name": "Order"}
    [problem] = check_compatibility(new, [(1, purchase(*BASE))], CompatibilityMode.BACKWARD)
    assert problem.field == "(record)"
    assert str(problem).startswith("(record): record renamed analytics_platform.events.Purchase")
    assert str(problem).endswith("(vs v1, BACKWARD)")


def test_no_previous_version_means_nothing_to_break() -> None:
    assert check_compatibility(purchase(*BASE), [], CompatibilityMode.FULL_TRANSITIVE) == []
    assert check_storage_evolution(purchase(*BASE), []) == []


# Each change to a field kept from the latest version -> the field the storage rule blames (None: allowed).
STORAGE_CHANGES: list[tuple[str, list[Field], list[Field], str | None]] = [
    ("int to long", BASE, [ORDER_ID, REVENUE, typed(ITEM_COUNT, "long")], None),
    ("long to int", [ORDER_ID, REVENUE, typed(ITEM_COUNT, "long")], BASE, "payload.item_count"),
    ("string to int", BASE, [typed(ORDER_ID, "int"), REVENUE, ITEM_COUNT], "payload.order_id"),
    ("decimal precision widened", BASE, [ORDER_ID, typed(REVENUE, decimal(18, 2)), ITEM_COUNT], None),
    ("decimal precision narrowed", BASE, [ORDER_ID, typed(REVENUE, decimal(10, 2)), ITEM_COUNT], "payload.revenue"),
    ("decimal scale changed", BASE, [ORDER_ID, typed(REVENUE, decimal(12, 3)), ITEM_COUNT], "payload.revenue"),
    ("made optional", BASE, [typed(ORDER_ID, ["null", "string"], default=None), REVENUE, ITEM_COUNT], None),
    ("made required", [*BASE, OPTIONAL_COUPON], [*BASE, REQUIRED_COUPON], None),
    (
        "optional int to optional long",
        [*BASE, typed(OPTIONAL_COUPON, ["null", "int"])],
        [*BASE, typed(OPTIONAL_COUPON, ["null", "long"])],
        None,
    ),
    ("field removed and another added", BASE, [ORDER_ID, REVENUE, OPTIONAL_COUPON], None),
]


@pytest.mark.parametrize(("change", "v1", "v2", "field"), STORAGE_CHANGES, ids=[row[0] for row in STORAGE_CHANGES])
def test_storage_allows_only_iceberg_promotions(
    change: str, v1: list[Field], v2: list[Field], field: str | None
) -> None:
    problems = check_storage_evolution(purchase(*v2), [(1, purchase(*v1))])
    assert [(problem.field, problem.rule, problem.against_version) for problem in problems] == (
        [(field, "storage", 1)] if field else []
    )


def test_storage_compares_with_the_latest_version_only() -> None:
    """Once v2 changed a type (under NONE, say), the table follows v2: v3 repeating v2 is not blamed for v1."""
    v2 = [typed(ORDER_ID, "int"), REVENUE, ITEM_COUNT]
    assert check_storage_evolution(purchase(*v2), [(1, purchase(*BASE)), (2, purchase(*v2))]) == []


def test_storage_message_says_why_and_what_to_do_instead() -> None:
    [problem] = check_storage_evolution(purchase(typed(ORDER_ID, "int"), REVENUE, ITEM_COUNT), [(3, purchase(*BASE))])
    assert "from string to int" in problem.message
    assert "table rewrite" in problem.message and "add a new field" in problem.message
    assert str(problem).endswith("(vs v3, storage)")
