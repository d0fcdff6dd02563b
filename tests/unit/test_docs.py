"""The committed AsyncAPI and OpenAPI documents match what the code generates, and are valid."""

from __future__ import annotations

import json

import pytest

from services.docs import DOCS_DIR, rendered


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    return rendered()


def test_every_document_is_committed_and_current(documents: dict[str, str]) -> None:
    for name, text in documents.items():
        path = DOCS_DIR / name
        assert path.exists(), f"{path} is missing: run python -m services.docs"
        assert path.read_text() == text, f"{name} is stale: run python -m services.docs and commit the result"


def test_asyncapi_lists_every_event_with_its_schema(documents: dict[str, str]) -> None:
    from shared.events import ALL_EVENTS

    text = documents["asyncapi.json"]
    for event in ALL_EVENTS:
        assert event.topic in text, f"{event.topic} is in no service's AsyncAPI"
        assert f'"title": "{event.__name__}"' in text, f"{event.__name__}'s schema is not in the AsyncAPI"


def test_openapi_documents_name_the_routes_users_call(documents: dict[str, str]) -> None:
    assert "/v1/groups/{pipeline}/versions/{version}/approve" in documents["registry.openapi.json"]
    assert "/v1/deployments/{pipeline}/rollback" in documents["deploy.openapi.json"]
    assert "/v1/predict" in documents["serving.openapi.json"]


def test_every_committed_openapi_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    paths = sorted(DOCS_DIR.glob("*.openapi.json"))
    assert [path.name.split(".")[0] for path in paths] == ["deploy", "registry", "serving"]
    for path in paths:
        try:
            validate(json.loads(path.read_text()))
        except OpenAPIValidationError as error:
            pytest.fail(f"{path.name} is not valid OpenAPI: {error}")
