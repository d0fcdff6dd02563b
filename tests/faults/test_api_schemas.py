"""Schemathesis against the running registry, deploy service and a served endpoint, by their own documents.

No generated request may get a 5xx, every response must match the document (status, content type,
headers, body schema), and a change (approval, rejection, promotion, rollback) or a dataset read
without credentials is a 401 whatever it sends. Each operation gets valid and invalid requests,
and (where it takes a pipeline) requests for the served pipeline, so that found resources are
checked as well as missing ones. The stateful phase then chains calls along the links Schemathesis
infers from the documents (a group listed feeds the reads of that group).

Everything is driven through Hypothesis directly (``given`` and the state machine's ``run``):
Schemathesis' pytest plugin (``schema.parametrize``) is not used, since it crashes under pytest 9.2.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response
from schemathesis import checks as st_checks
from schemathesis.schemas import APIOperation, BaseSchema

from tests.e2e.conftest import Stack
from tests.faults.conftest import Served

pytestmark = [
    pytest.mark.infra,
    # Schemathesis' own strategies draw from `random`; not ours to change.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 40
CHANGES = ("/approve", "/reject", "/rollback", "/promote")
TOKEN_ONLY = "/v1/datasets/"
STATEFUL_SCENARIOS = 25


def requests_for(operation: APIOperation, served: Served) -> st.SearchStrategy[Case]:
    """Valid and invalid requests for ``operation``, some of them for the served pipeline."""
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{pipeline}" in operation.path:
        strategies.append(operation.as_strategy(path_parameters={"pipeline": served.pipeline}))
    return st.one_of(strategies)


def check(case: Case, *, headers: dict[str, str] | None = None) -> None:
    """Send ``case`` and hold the answer to the document, and to 401 for unauthenticated changes."""
    verify(case, case.call(headers=headers, timeout=30), headers=headers)


def verify(case: Case, response: Response, *, headers: dict[str, str] | None) -> None:
    """Hold ``response`` to the document, and to 401 for unauthenticated changes and dataset reads."""
    media_type = (response.request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if response.status_code == 415 and media_type not in ("", "application/json"):
        # The endpoint's JSON-only guard (pickle bodies), documented like any other answer.
        assert "accepts application/json only" in response.text, response.text
    case.validate_response(response, checks=CHECKS, headers=headers)
    if headers is None and (
        case.operation.path.endswith(CHANGES) or case.operation.path.startswith(TOKEN_ONLY)
    ):
        assert response.status_code == 401, (
            f"{case.operation.label} without credentials answered {response.status_code}: {response.text}"
        )


def exercise(schema: BaseSchema, served: Served, *, headers: dict[str, str] | None = None) -> int:
    """Run every operation of ``schema``; fail with every operation that broke a check. Returns the count."""
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=requests_for(operation, served))
        def run(case: Case) -> None:
            check(case, headers=headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as error:  # report every operation, not only the first
            failures.append(f"{operation.label}:\n{error}")
    assert not failures, "\n\n".join(failures)
    return len(operations)


def exercise_statefully(schema: BaseSchema) -> set[str]:
    """Chain calls along the inferred links (unauthenticated), each answer held to the same checks.

    Returns the operations that links lead to (inferred while the state machine is built).
    """

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"timeout": 30}

        def validate_response(self, response: Response, case: Case, *args: Any, **kwargs: Any) -> None:
            verify(case, response, headers=None)

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    return set(schema.operations_with_incoming_links())


def load(url: str) -> Any:
    """The OpenAPI document a running service serves."""
    return schemathesis.openapi.from_url(url, timeout=10)


async def test_registry_api_matches_its_document(stack: Stack, served: Served) -> None:
    schema = load(f"{stack.settings.registry_base_url}/openapi.json")
    assert await asyncio.to_thread(exercise, schema, served) >= 8


async def test_deploy_api_matches_its_document(stack: Stack, served: Served) -> None:
    schema = load(f"{stack.settings.deploy_base_url}/openapi.json")
    assert await asyncio.to_thread(exercise, schema, served) >= 4


@pytest.mark.parametrize("service", ["registry", "deploy"])
async def test_call_sequences_follow_the_documents(stack: Stack, served: Served, service: str) -> None:
    base = stack.settings.registry_base_url if service == "registry" else stack.settings.deploy_base_url
    linked = await asyncio.to_thread(exercise_statefully, load(f"{base}/openapi.json"))
    assert linked, f"Schemathesis inferred no link between the {service} operations: no stateful phase"


async def test_serving_endpoint_matches_its_document(stack: Stack, served: Served) -> None:
    schema = load(f"{served.deployed.endpoint_url}/docs.json")
    assert await asyncio.to_thread(exercise, schema, served) >= 2


async def test_changes_with_credentials_match_the_documents(stack: Stack, served: Served) -> None:
    """Authenticated approvals, rejections and rollbacks: every version here is decided, so none changes."""
    for url in (stack.settings.registry_base_url, stack.settings.deploy_base_url):
        schema = load(f"{url}/openapi.json").include(path_regex="/(approve|reject|rollback)$")
        assert await asyncio.to_thread(exercise, schema, served, headers=stack.approver_headers) >= 1
