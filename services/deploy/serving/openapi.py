"""The endpoint's OpenAPI document: BentoML's generated one, made valid OpenAPI 3.1 and exact.

BentoML 1.4.40 writes the routes' schemas as pydantic's JSON Schema (``type: null`` among them,
which only OpenAPI 3.1 allows) into a document it labels 3.0.2; it flattens every union in a
request or response body to its first member, so the list of rows disappears from ``/v1/predict``
and feedback's ``actual`` becomes a number; it leaks its internal ``root_input`` keyword; it lists
400, 404 and 500 for every route and leaves the guard's 415, the time limit's 504 and mounted
Starlette routes out. So the document keeps what BentoML gets right (the infrastructure routes,
its error objects, operation ids) and replaces exactly the rest with the JSON Schema that pydantic
generates from the very models the routes validate and answer with, under OpenAPI 3.1 (the
version of pydantic's JSON Schema, and of the registry's and deploy service's documents).
``tests/unit/deploy/test_openapi.py`` pins what BentoML generates, so an upgrade that changes it
fails there rather than changing the document unnoticed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import bentoml
from pydantic import BaseModel

from services.deploy.serving.guard import ASGIApp, Receive, Scope, Send
from services.deploy.serving.io import MAX_ROWS
from shared.clients.serving import EndpointPerformance

OPENAPI_VERSION = "3.1.0"
DOCS_PATH = "/docs.json"
REF = "#/components/schemas/{model}"
PREDICT, FEEDBACK, PERFORMANCE = "/v1/predict", "/v1/feedback", "/v1/monitoring/performance"

ROW_DESCRIPTION = (
    "One row: an object of feature name to value (a number, string, boolean or null). Columns the "
    "model does not use (an id, a timestamp, a column its pipeline spec leaves out) are ignored; "
    "a missing feature, or a value of the wrong type for a feature, is refused with a 400 that "
    "names it."
)
ROWS_DESCRIPTION = f"One row, or a list of 1 to {MAX_ROWS:,} rows scored in one call."

_BAD_ROWS = (
    "The body is not JSON, is neither a row nor a list of 1 to "
    f"{MAX_ROWS:,} rows, or a row lacks a feature the model uses or gives it a value of the wrong "
    "type; `error` says which and `detail` says why."
)
_MEDIA_TYPE = "The body is not `application/json` (a pickle above all): it is not read."
_TIMEOUT = "The request was not answered within the endpoint's time limit."


@dataclass(frozen=True)
class Operation:
    """What the document says about one route beyond what BentoML gets right."""

    summary: str
    description: str
    ok: str  # the success response's schema (a component name)
    answer: str  # what the success response holds
    errors: dict[int, str] = field(default_factory=dict)  # status: when it is answered
    request: str | None = None  # the body's schema (a component name)


OPERATIONS = {
    PREDICT: Operation(
        summary="Predict one row or a list of rows",
        description="Predict one row, or a list of rows in one call: one prediction per row, in the "
        "order sent, each with the id to quote when sending its ground truth to /v1/feedback.",
        request="Rows",
        ok="PredictionResponse",
        answer="One prediction per row, in the order sent (a list of one for a single row).",
        errors={400: _BAD_ROWS, 415: _MEDIA_TYPE, 504: _TIMEOUT},
    ),
    FEEDBACK: Operation(
        summary="Send the ground truth of a prediction",
        description="Send the ground truth of an earlier prediction, whichever worker served it; the "
        "endpoint's live accuracy or mean absolute error counts it once.",
        request="FeedbackRequest",
        ok="FeedbackResult",
        answer="The ground truth beside its prediction: whether it was right (classification) or by "
        "how much it was off (regression).",
        errors={
            400: "The body is not a feedback object, or the actual value cannot be compared with the "
            "prediction (a regression's must be a number).",
            404: "No recent prediction of this endpoint has that id: it was never served here, has "
            "left the feedback window, or already has its feedback.",
            415: _MEDIA_TYPE,
        },
    ),
    PERFORMANCE: Operation(
        summary="Live figures of the answering worker",
        description="The live figures of the worker that answers: feedback joined so far, accuracy "
        "(classification) or mean absolute error (regression), capture counters and model calls.",
        ok="EndpointPerformance",
        answer="The answering worker's figures (figures added later come as further fields).",
    ),
}


def document(service: bentoml.Service[Any]) -> dict[str, Any]:
    """``service``'s OpenAPI document: BentoML's, with the routes' real schemas and answers."""
    generated: dict[str, Any] = json.loads(json.dumps(service.openapi_spec.asdict()))
    schemas = generated["components"]["schemas"]
    kept = {name: schemas[name] for name in _KEPT_COMPONENTS}  # BentoML's error objects
    error = schemas["InvalidArgument"]  # the guard's and the time limit's answers have the same shape
    kept["UnsupportedMediaType"] = {**error, "title": "UnsupportedMediaType", "description": _MEDIA_TYPE}
    kept["Timeout"] = {**error, "title": "Timeout", "description": _TIMEOUT}
    paths = {path: item for path, item in generated["paths"].items() if path not in OPERATIONS}
    models = _route_schemas(service)
    for path, operation in OPERATIONS.items():
        method = "get" if operation.request is None else "post"
        bentoml_operation = generated["paths"].get(path, {}).get(method, {})
        operation_id = bentoml_operation.get("operationId", f"{service.name}__{path.rsplit('/', 1)[1]}")
        paths[path] = {method: _operation(operation, operation_id=operation_id)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Conveyor prediction endpoint",
            "version": "1",
            "description": "A pipeline's real-time endpoint: predictions of its served model version, "
            "the ground truth joined to them, and the live figures that feedback yields. Every body "
            "is JSON; every error is an object with an `error` text and, where there is more to "
            "say, a `detail` text.",
        },
        "servers": generated["servers"],
        "tags": generated["tags"],
        "paths": paths,
        "components": {"schemas": {**kept, **models}},
    }


_TAG = "Service APIs"  # BentoML's tag of a service's own routes
_KEPT_COMPONENTS = ("InvalidArgument", "NotFound", "InternalServerError")
_ERROR_COMPONENTS = {400: "InvalidArgument", 404: "NotFound", 415: "UnsupportedMediaType", 504: "Timeout"}


def _operation(operation: Operation, *, operation_id: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _response(operation.answer, operation.ok)}
    for status, when in operation.errors.items():
        responses[str(status)] = _response(when, _ERROR_COMPONENTS[status])
    responses["500"] = _response("The endpoint failed; `error` says how.", "InternalServerError")
    answer: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [_TAG],
        "summary": operation.summary,
        "description": operation.description,
        "responses": responses,
    }
    if operation.request is not None:
        answer["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=operation.request)}}},
        }
    return answer


def _response(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
    }


def _route_schemas(service: bentoml.Service[Any]) -> dict[str, Any]:
    """The routes' request and answer schemas as pydantic writes them, by component name."""
    predict, feedback = service.apis["predict"], service.apis["feedback"]
    schemas: dict[str, Any] = {}
    schemas |= _rows(predict.input_spec.model_json_schema(ref_template=REF))
    request = feedback.input_spec.model_json_schema(ref_template=REF)
    request["properties"]["prediction_id"]["description"] = "The id /v1/predict gave the prediction."
    request["properties"]["actual"]["description"] = "The true label (classification) or value (regression)."
    schemas["FeedbackRequest"] = {**request, "title": "FeedbackRequest"}
    for model in (_answered(predict.output_spec), _answered(feedback.output_spec), EndpointPerformance):
        answer = model.model_json_schema(ref_template=REF, mode="serialization")
        schemas |= answer.pop("$defs", {})
        schemas[model.__name__] = answer
    return schemas


def _rows(generated: dict[str, Any]) -> dict[str, Any]:
    """The body of /v1/predict, one row or a list of them, as two components (``Row``, ``Rows``)."""
    schema = copy.deepcopy(generated)
    schema.pop("root_input", None)  # BentoML's own marker of a body that is the argument itself
    one, many = schema["anyOf"]
    if many.get("type") != "array" or many.get("items") != one or one.get("type") != "object":
        raise RuntimeError(f"the rows' schema is no longer one row or a list of rows: {generated}")
    row = {**one, "title": "Row", "description": ROW_DESCRIPTION}
    rows = {
        "title": "Rows",
        "description": ROWS_DESCRIPTION,
        "anyOf": [{"$ref": REF.format(model="Row")}, {**many, "items": {"$ref": REF.format(model="Row")}}],
    }
    return {"Row": row, "Rows": rows}


def _answered(spec: type[BaseModel]) -> type[BaseModel]:
    """The model a route answers with (BentoML wraps it in a subclass of its own, ...IODescriptor)."""
    for base in spec.__mro__:
        if issubclass(base, BaseModel) and not base.__module__.startswith("_bentoml"):
            return base
    raise RuntimeError(f"{spec} wraps no model of ours")


class ServedDocument:
    """ASGI middleware answering ``GET /docs.json`` with ``document(service)``, built once per worker.

    BentoML's own route would serve its generated document; every other request passes through.
    """

    def __init__(self, app: ASGIApp, service: bentoml.Service[Any]) -> None:
        self.app = app
        self._service = service
        self._body: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCS_PATH or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if self._body is None:
            self._body = json.dumps(document(self._service)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else self._body})
