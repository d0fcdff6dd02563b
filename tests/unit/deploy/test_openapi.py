"""The endpoint's OpenAPI document: valid, exact about what the routes take, and BentoML's part pinned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bentoml._internal.server.http import traffic
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.deploy.serving.io import MAX_ROWS, RowsInput
from services.deploy.serving.openapi import DOCS_PATH, OPERATIONS, ServedDocument, document
from shared.clients.serving import EndpointPerformance, FeedbackResult, PredictionResponse

ROW = {"age": 41, "income": 5200.5, "plan": "gold", "active": True, "note": None}


@pytest.fixture(scope="module")
def service() -> Iterator[Any]:
    """The endpoint's BentoML service.

    Importing it installs the workers' time-limit middleware into BentoML's ``traffic`` module (see
    services/deploy/serving/request_timeout.py); BentoML's own class is put back afterwards, so
    that the tests of that middleware still compare it with BentoML's.
    """
    bentoml_timeout = traffic.TimeoutMiddleware
    from services.deploy.serving.service import PredictionService

    yield PredictionService
    traffic.TimeoutMiddleware = bentoml_timeout  # type: ignore[misc]


@pytest.fixture(scope="module")
def doc(service: Any) -> dict[str, Any]:
    return document(service)


@pytest.fixture(scope="module")
def generated(service: Any) -> dict[str, Any]:
    """What BentoML itself generates, as JSON."""
    return json.loads(json.dumps(service.openapi_spec.asdict()))


def _operation(doc: dict[str, Any], path: str) -> dict[str, Any]:
    (operation,) = doc["paths"][path].values()
    return operation


def _schema_of(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert "root_input" not in json.dumps(doc), "BentoML's internal keyword leaked into the document"


def test_bentoml_still_generates_what_is_post_processed(generated: dict[str, Any]) -> None:
    """If this fails after a BentoML upgrade, review services/deploy/serving/openapi.py against it."""
    predict = generated["paths"]["/v1/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    answer = generated["paths"]["/v1/feedback"]["post"]["responses"]["200"]["content"]["application/json"]
    assert generated["openapi"] == "3.0.2"
    assert body["root_input"] is True and body["type"] == "object", "the one-row half of the union only"
    assert answer["schema"]["properties"]["actual"] == {"title": "Actual", "type": "number"}
    assert set(predict["responses"]) == {"200", "400", "404", "500"}
    assert "/v1/monitoring/performance" not in generated["paths"]
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        error = generated["components"]["schemas"][name]
        assert error["required"] == ["error"] and set(error["properties"]) == {"error", "detail"}


def test_every_route_of_the_service_is_described(service: Any) -> None:
    """A route added to the service needs its entry in OPERATIONS, or BentoML's flattened schema stays."""
    routes = {api.route for api in service.apis.values()}
    mounted = {f"{path}{route.path}" for app, path, _ in service.mount_apps for route in app.routes}
    assert routes | mounted == set(OPERATIONS)


def test_every_route_answers_with_the_models_it_returns(doc: dict[str, Any]) -> None:
    for path, model, status in (
        ("/v1/predict", PredictionResponse, {"200", "400", "415", "500", "504"}),
        ("/v1/feedback", FeedbackResult, {"200", "400", "404", "415", "500"}),
        ("/v1/monitoring/performance", EndpointPerformance, {"200", "500"}),
    ):
        responses = _operation(doc, path)["responses"]
        assert set(responses) == status, path
        ok = _schema_of(doc, responses["200"]["content"]["application/json"]["schema"]["$ref"])
        assert ok["properties"].keys() == model.model_json_schema()["properties"].keys()


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        (ROW, True),
        ({}, True),  # the model, not the document, names the features it needs
        ([ROW, {"age": 3}], True),
        ([{}] * MAX_ROWS, True),
        ([], False),
        ([{}] * (MAX_ROWS + 1), False),
        ({"age": [41]}, False),
        ({"age": {"years": 41}}, False),
        ([ROW, 1], False),
        ("age=41", False),
        (None, False),
    ],
)
def test_the_rows_schema_takes_what_the_route_takes(doc: dict[str, Any], body: Any, taken: bool) -> None:
    rows = _operation(doc, "/v1/predict")["requestBody"]["content"]["application/json"]["schema"]
    validator = OAS31Validator({**rows, "components": doc["components"]})
    try:
        RowsInput.model_validate(body)
        route_takes = True
    except ValidationError:
        route_takes = False
    assert (validator.is_valid(body), route_takes) == (taken, taken)


def test_feedback_takes_any_label_and_says_so(doc: dict[str, Any]) -> None:
    request = _operation(doc, "/v1/feedback")["requestBody"]["content"]["application/json"]["schema"]
    validator = OAS31Validator({**request, "components": doc["components"]})
    for actual in (1, 0.5, "yes", True, None):
        assert validator.is_valid({"prediction_id": "w1-abc", "actual": actual}), actual
    assert not validator.is_valid({"prediction_id": "w1-abc"})


def test_the_descriptions_say_what_a_row_may_and_must_carry(doc: dict[str, Any]) -> None:
    row = doc["components"]["schemas"]["Row"]["description"]
    assert "ignored" in row and "missing feature" in row and "wrong type" in row and "400" in row
    assert f"{MAX_ROWS:,}" in doc["components"]["schemas"]["Rows"]["description"]


async def test_the_workers_serve_the_document_and_pass_everything_else_on(
    service: Any, doc: dict[str, Any]
) -> None:
    async def behind(_: Request) -> PlainTextResponse:
        return PlainTextResponse("the app behind")

    app = ServedDocument(
        Starlette(routes=[Route("/{path:path}", behind, methods=["GET", "POST"])]),
        service=service,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://endpoint") as client:
        served = await client.get(DOCS_PATH)
        passed = [await client.post(DOCS_PATH), await client.get("/v1/monitoring/performance")]
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == doc
    assert [answer.text for answer in passed] == ["the app behind"] * 2
