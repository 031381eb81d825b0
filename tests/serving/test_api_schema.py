"""Property-based tests of the API against its own OpenAPI schema (schemathesis): whatever a client sends
that the schema allows, and much that it does not, the answer is never a 5xx and always matches the
schema. With an unrestricted key, a country-limited one, and none.

The operations are driven with schemathesis's hypothesis strategies directly: its pytest plugin's lazy
fixture loader does not work with pytest 9, and the app needs a fixture (the landed marts)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from analytics_platform.serving.api.app import create_app
from tests.serving.conftest import Served

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 60


@pytest.mark.parametrize("who", ["viewer", "restricted", None])
def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(who: str | None, served: Served) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(served.settings))
    headers = served.auth(who) if who else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {"/v1/metrics", "/v1/metrics/sessions", "/healthz"}

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION * len(operations),
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        database=None,
    )
    @hypothesis.given(case=st.one_of(*(operation.as_strategy() for operation in operations)))
    def any_request_is_answered_within_the_schema(case: schemathesis.Case) -> None:
        # A schema cannot say that a cursor must be one the API signed, or that start must precede end:
        # such requests get a 422 that the acceptance check would count against the API.
        case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

    any_request_is_answered_within_the_schema()
