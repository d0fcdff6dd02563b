"""The shared serving workers: many pipelines on one port, each at ``/pipelines/<name>``.

A pipeline served here keeps the contract of a dedicated endpoint under its own address:
``POST <endpoint>/v1/predict``, ``POST <endpoint>/v1/feedback`` and
``GET <endpoint>/v1/monitoring/performance``, where ``<endpoint>`` is
``http://<host>:<pool port>/pipelines/<name>``. The deploy service starts these workers on the
pool's port (``services.deploy.pool``) with the arguments ``workers=<n>`` and
``control=<socket prefix>`` and tells every worker which version each pipeline serves; a model is
loaded on its first request and unloaded when it is the least recently used past the memory
budget (``services.deploy.serving.model_pool``). Captures of every model go out through the
worker's one Kafka connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

import bentoml
from bentoml.exceptions import BadInput, NotFound
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.deploy.serving import control
from services.deploy.serving.endpoint import (
    LoadedModel,
    as_batch,
    join_feedback,
    request_inputs,
    respond,
    worker_of,
)
from services.deploy.serving.guard import JsonOnly
from services.deploy.serving.io import Rows
from services.deploy.serving.metrics import serving_metrics
from services.deploy.serving.model_pool import Assignment, ModelPool, UnknownPipeline
from services.deploy.serving.request_timeout import install as install_request_timeout
from services.deploy.serving.tracing import Origin
from services.deploy.serving.versions import Served
from services.deploy.settings import DeploySettings
from shared.clients.serving import FeatureValue
from shared.messaging import create_broker

POOL_SERVICE_NAME = "conveyor_pool"
log = logging.getLogger("conveyor.serving.pool")
_KAFKA_RETRY_S = 1.0


class PoolArgs(BaseModel):
    """What the shared workers are started with (``--arg`` values); the rest comes from settings."""

    workers: int = Field(default=1, ge=1)
    control: str = ""


class FeedbackBody(BaseModel):
    """The ground truth of an earlier prediction."""

    prediction_id: str = Field(min_length=1, max_length=200)
    actual: FeatureValue


args = bentoml.use_arguments(PoolArgs)
install_request_timeout()


def _pool() -> PoolService:
    service: PoolService = bentoml.get_current_service()
    return service


async def _predict(request: Request) -> JSONResponse:
    try:
        rows: Rows = json.loads(await request.body())
    except ValueError:
        return _error(400, "BadInput", "the body is not JSON")
    if not isinstance(rows, dict | list) or (
        isinstance(rows, list) and not all(isinstance(r, dict) for r in rows)
    ):
        return _error(400, "BadInput", "send one row (an object keyed by feature name) or a list of rows")
    return await _pool().predict(request.path_params["pipeline"], rows)


async def _feedback(request: Request) -> JSONResponse:
    try:
        body = FeedbackBody.model_validate_json(await request.body())
    except ValidationError as error:
        return _error(400, "BadInput", str(error.errors(include_url=False)[:3]))
    return await _pool().feedback(request.path_params["pipeline"], body.prediction_id, body.actual)


async def _performance(request: Request) -> JSONResponse:
    return await _pool().performance(request.path_params["pipeline"])


pipelines = Starlette(
    routes=[
        Route("/{pipeline}/v1/predict", _predict, methods=["POST"]),
        Route("/{pipeline}/v1/feedback", _feedback, methods=["POST"]),
        Route("/{pipeline}/v1/monitoring/performance", _performance, methods=["GET"]),
    ]
)


@bentoml.asgi_app(pipelines, path="/pipelines")
@bentoml.service(
    name=POOL_SERVICE_NAME,
    workers=args.workers,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/pipelines"]},
)
class PoolService:
    """One shared worker: the pipelines assigned to it, the models it holds, one Kafka connection."""

    def __init__(self) -> None:
        self.settings = DeploySettings()
        self.worker = bentoml.server_context.worker_index or 1
        self.metrics = serving_metrics()
        self.broker = create_broker(self.settings)
        self.pool = ModelPool(
            make=self._served,
            budget_bytes=self.settings.serving_pool_budget_mb * 1024 * 1024,
            max_models=self.settings.serving_pool_max_models,
        )
        self._control: Any = None
        self._connecting: asyncio.Task[None] | None = None
        # Started again after a crash, it knows every pipeline's version before its first request.
        for assigned in _assignments_at_start():
            self.pool.assigned[assigned.pipeline] = assigned

    @bentoml.on_startup
    async def start(self) -> None:
        """Answer the deploy service, and connect to Kafka in the background."""
        self._connecting = asyncio.create_task(self._connect())
        if args.control:
            self._control = await control.serve(control.socket_path(args.control, self.worker), self.command)
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        """Stop answering commands, publish every model's captures, disconnect."""
        if self._control is not None:
            self._control.close()
        await self.pool.stop()
        if self._connecting is not None:
            self._connecting.cancel()
        with contextlib.suppress(Exception):
            await self.broker.stop()

    async def predict(self, pipeline: str, rows: Rows) -> JSONResponse:
        """One row or a list of rows of ``pipeline``, answered by its assigned version."""
        try:
            served = await self.pool.served(pipeline)
        except UnknownPipeline as error:
            return _error(404, "NotFound", str(error))
        served.in_flight += 1
        try:
            batch = as_batch(rows)
            inputs = request_inputs(served.loaded, batch)
            predicted = await served.predict(inputs)
            answer = respond(served.loaded, batch, predicted, monitor=served.monitor, worker=self.worker)
        except BadInput as error:
            return _error(400, "BadInput", str(error))
        finally:
            served.in_flight -= 1
        return JSONResponse(answer.model_dump(mode="json"))

    async def feedback(self, pipeline: str, prediction_id: str, actual: FeatureValue) -> JSONResponse:
        """Join ground truth to an earlier prediction of ``pipeline``, whichever worker served it."""
        owner = worker_of(prediction_id)
        if owner is None or owner == self.worker or not args.control:
            return self._join(pipeline, prediction_id, actual)
        command = {"op": "feedback", "pipeline": pipeline, "prediction_id": prediction_id, "actual": actual}
        try:
            joined = await control.ask(control.socket_path(args.control, owner), command, timeout_s=10.0)
        except control.ControlError as error:
            kind, _, reason = str(error).partition(": ")
            return _error(
                400 if kind == "BadInput" else 404, "NotFound" if kind != "BadInput" else kind, reason
            )
        return JSONResponse(joined["result"])

    async def performance(self, pipeline: str) -> JSONResponse:
        """The live figures of the pipeline's model on this worker (404 when it is not loaded here)."""
        served = self.pool.resident(pipeline)
        if served is None:
            return _error(404, "NotFound", f"{pipeline!r} has no model loaded on worker {self.worker}")
        return JSONResponse(
            {**served.monitor.performance(), "model_calls": served.calls, "worker": self.worker}
        )

    async def command(self, command: Mapping[str, Any]) -> Mapping[str, Any]:
        """Answer one command of the deploy service (or of a sibling worker)."""
        op = command.get("op")
        if op == "status":
            return {"version": 0, "worker": self.worker, "pid": os.getpid(), **self.pool.status()}
        if op == "assign":
            assignment = Assignment(
                pipeline=str(command["pipeline"]),
                tag=str(command["tag"]),
                version=int(command["version"]),
                correlation_id=UUID(str(command["correlation_id"])),
            )
            await self.pool.assign(assignment, warm=bool(command.get("warm")))
            return {"version": assignment.version}
        if op == "remove":
            self.pool.remove(str(command["pipeline"]))
            return {}
        if op == "feedback":
            answer = self._join(str(command["pipeline"]), str(command["prediction_id"]), command["actual"])
            if answer.status_code != 200:
                body = json.loads(bytes(answer.body))
                raise (BadInput if answer.status_code == 400 else NotFound)(body["detail"])
            return {"result": json.loads(bytes(answer.body))}
        raise ValueError(f"unknown command {op!r}")

    def _join(self, pipeline: str, prediction_id: str, actual: FeatureValue) -> JSONResponse:
        served = self.pool.resident(pipeline)
        if served is None or not served.monitor.book.knows(prediction_id):
            return _error(404, "NotFound", f"no recent prediction of {pipeline!r} has id {prediction_id!r}")
        try:
            result = join_feedback(served.monitor, prediction_id, actual)
        except (BadInput, NotFound) as error:
            return _error(400 if isinstance(error, BadInput) else 404, type(error).__name__, str(error))
        return JSONResponse(result.model_dump(mode="json"))

    def _served(self, loaded: LoadedModel, correlation_id: UUID, origin: Origin) -> Served:
        return Served.monitored(
            loaded, correlation_id, origin, settings=self.settings, metrics=self.metrics, broker=self.broker
        )

    async def _connect(self) -> None:
        while True:
            try:
                await self.broker.start()
                return
            except Exception as error:
                log.warning("Kafka not reachable for capture (%r); retrying", error)
                await asyncio.sleep(_KAFKA_RETRY_S)


def _assignments_at_start() -> list[Assignment]:
    path = Path(os.environ.get("BENTOML_HOME", ".")) / control.ASSIGNMENTS_FILE
    if not path.exists():
        return []
    return [
        Assignment(
            pipeline=str(one["pipeline"]),
            tag=str(one["tag"]),
            version=int(one["version"]),
            correlation_id=UUID(str(one["correlation_id"])),
        )
        for one in json.loads(path.read_text())
    ]


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


PoolService.add_asgi_middleware(JsonOnly)  # type: ignore[attr-defined]
