"""The BentoML service behind every pipeline endpoint: warm workers that switch model versions in place.

The deploy service starts BentoML's HTTP workers of this service on the pipeline's own port (a
socket it binds; see ``services.deploy.rollout``), with the arguments ``model_tag=<pipeline>:v<N>``,
``correlation_id=<uuid>``, ``workers=<n>`` and ``control=<socket prefix>``. Clients reach the
workers directly; the deploy service tells each worker over its control socket to prepare and
then activate a new version (``services.deploy.serving.versions``). ``bentoml serve`` of this
class with the same ``--arg`` values runs it too (without a control socket).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping
from functools import partial
from typing import Any
from uuid import UUID

import bentoml
from bentoml.exceptions import BadInput, BentoMLException, NotFound
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.deploy.serving import control
from services.deploy.serving.after_response import AfterResponse, after_response
from services.deploy.serving.endpoint import (
    LoadedModel,
    as_batch,
    join_feedback,
    request_inputs,
    respond,
    worker_of,
)
from services.deploy.serving.errors import ErrorObjects
from services.deploy.serving.guard import JsonOnly
from services.deploy.serving.io import Rows, RowsInput
from services.deploy.serving.metrics import serving_metrics
from services.deploy.serving.openapi import ServedDocument
from services.deploy.serving.request_timeout import install as install_request_timeout
from services.deploy.serving.split import Split
from services.deploy.serving.tally import WindowTally
from services.deploy.serving.tracing import Origin, ServingTracer
from services.deploy.serving.versions import Served, Versions
from services.deploy.settings import DeploySettings
from shared.clients.serving import FeatureValue, FeedbackResult, PredictionResponse
from shared.release import STICKY_HEADER

SERVICE_NAME = "conveyor_prediction"


class ServingArgs(BaseModel):
    """What one server serves (``--arg`` values); the rest comes from CONVEYOR_* settings."""

    model_tag: str = ""
    correlation_id: UUID = UUID(int=0)
    workers: int = Field(default=1, ge=1)
    # Path prefix of the workers' control sockets; none when empty.
    control: str = ""
    # The trace context of the arrival the version came from (W3C traceparent), for its first prediction.
    traceparent: str = ""


args = bentoml.use_arguments(ServingArgs)
install_request_timeout()


async def _performance(_: Request) -> JSONResponse:
    service: PredictionService = bentoml.get_current_service()
    return JSONResponse(service.performance())


monitoring = Starlette(routes=[Route("/performance", _performance, methods=["GET"])])


@bentoml.asgi_app(monitoring, path="/v1/monitoring")
@bentoml.service(
    name=SERVICE_NAME,
    workers=args.workers,
    # Not BentoML's adaptive batching: it changes the request contract (a list per call) and its
    # latency budget sheds load with 503s. The worker batches by itself (PredictionBatcher), and
    # requests queue on its event loop rather than being refused (no max_concurrency).
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
    # BentoML's tracing middleware makes a span per request even though these servers export no
    # spans: 0.35 ms of CPU per prediction (a third of BentoML's own cost), left out of the routes.
    tracing={"excluded_urls": ["/v1/predict", "/v1/feedback"]},
)
class PredictionService:
    """One pipeline's endpoint worker: the active model version, capture, feedback and version switches."""

    def __init__(self) -> None:
        self.settings = DeploySettings()
        self.worker = bentoml.server_context.worker_index or 1
        self.metrics = serving_metrics()
        self.tracer = ServingTracer(self.settings)
        origin = Origin({"traceparent": args.traceparent} if args.traceparent else None)
        first = self._served(LoadedModel.from_store(args.model_tag), args.correlation_id, origin)
        self.versions = Versions(first, make=self._served)
        self._control: Any = None

    @bentoml.on_startup
    async def start(self) -> None:
        """Start publishing captures and answering the deploy service; set the loaded heap aside.

        The imports and the model are some 200,000 objects that live as long as the worker; a
        full collection that walks them all takes 100 ms and more on a busy machine, right on
        the event loop. Frozen, they are skipped, and a full collection takes a few ms.
        """
        await self.versions.active.monitor.start()
        if args.control:
            self._control = await control.serve(control.socket_path(args.control, self.worker), self.command)
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        """Stop answering commands, publish what is still queued, then disconnect."""
        if self._control is not None:
            self._control.close()
        await self.versions.stop()
        self.tracer.shutdown()

    # Async, so the model runs on the worker's event loop: a sync API would hop to BentoML's
    # one-thread pool for every request, which measured 0.5 ms slower per request and a third
    # less throughput at 32 clients; requests queue on the loop either way (no 503 shedding).
    @bentoml.api(route="/v1/predict", input_spec=RowsInput)
    async def predict(self, rows: Rows, /, ctx: bentoml.Context) -> PredictionResponse:
        """Predict one row (an object keyed by feature name) or a list of rows."""
        split = self.versions.split
        if split is None:
            return await self._answer(self.versions.active, rows, ctx)
        return await self._answer_in_release(split, rows, ctx)

    async def _answer(self, served: Served, rows: Rows, ctx: bentoml.Context) -> PredictionResponse:
        # The whole request is answered by the version it began with.
        served.in_flight += 1
        try:
            with self._span("predict", ctx, served):
                batch = as_batch(rows)
                inputs = request_inputs(served.loaded, batch)
                with self.tracer.step("model call"):
                    predicted = await served.predict(inputs)
                with self.tracer.step("capture"):
                    return respond(
                        served.loaded, batch, predicted, monitor=served.monitor, worker=self.worker
                    )
        finally:
            served.in_flight -= 1

    async def _answer_in_release(self, split: Split, rows: Rows, ctx: bentoml.Context) -> PredictionResponse:
        """Answer with the side the request falls to, tallying it; in shadow mode, score a copy too."""
        to_candidate = split.to_candidate(ctx.request.headers.get(STICKY_HEADER))
        served = split.candidate if to_candidate else self.versions.active
        tally = split.challenger if to_candidate else split.baseline
        started = time.perf_counter()
        try:
            response = await self._answer(served, rows, ctx)
        except BentoMLException as error:
            if int(error.error_code) >= 500:
                tally.failed(_ms_since(started))
            raise
        except Exception:
            tally.failed(_ms_since(started))
            raise
        tally.answered(_ms_since(started), [p.prediction for p in response.predictions])
        if split.mode == "shadow":
            shadow = partial(self._shadow, split, as_batch(rows), response)  # a coroutine only if not skipped
            after_response(ctx.request, partial(split.in_background, shadow))
        return response

    async def _shadow(self, split: Split, batch: list[Any], response: PredictionResponse) -> None:
        """The candidate's answer to rows already answered: tallied, compared, captured under the same ids."""
        candidate = split.candidate
        candidate.in_flight += 1
        started = time.perf_counter()
        try:
            predicted = await candidate.predict(request_inputs(candidate.loaded, batch))
        except Exception:
            split.challenger.failed(_ms_since(started))
            return
        finally:
            candidate.in_flight -= 1
        split.challenger.answered(_ms_since(started), predicted.labels)
        candidate.monitor.observe([p.prediction_id for p in response.predictions], batch, predicted.labels)
        split.compare([p.prediction for p in response.predictions], predicted.labels)

    def _span(self, name: str, ctx: bentoml.Context, served: Served) -> Any:
        if not self.tracer.enabled:
            return self.tracer.request(name, headers={}, origin=served.origin, attributes={})
        card = served.loaded.card
        attributes = {
            "conveyor.pipeline": card.pipeline,
            "conveyor.version": card.version,
            "conveyor.correlation_id": str(served.correlation_id),
            "conveyor.worker": self.worker,
        }
        headers = dict(ctx.request.headers)
        return self.tracer.request(name, headers=headers, origin=served.origin, attributes=attributes)

    @bentoml.api(route="/v1/feedback")
    async def feedback(self, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
        """Join the ground truth of an earlier prediction to it, whichever worker served it."""
        owner = worker_of(prediction_id)
        if owner is None or owner == self.worker or not args.control:
            return self.join(prediction_id, actual)
        command = {"op": "feedback", "prediction_id": prediction_id, "actual": actual}
        try:
            joined = await control.ask(control.socket_path(args.control, owner), command, timeout_s=10.0)
        except control.ControlError as error:
            if str(error).startswith("NotFound"):
                raise NotFound(str(error).partition(": ")[2]) from None
            if str(error).startswith("BadInput"):
                raise BadInput(str(error).partition(": ")[2]) from None
            raise NotFound(f"no recent prediction has id {prediction_id!r} ({error})") from None
        return FeedbackResult.model_validate(joined["result"])

    def join(self, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
        """Join feedback to a prediction this worker served (the active version's or a retired one's)."""
        monitors = self.versions.monitors()
        monitor = next((m for m in monitors if m.book.knows(prediction_id)), monitors[0])
        result = join_feedback(monitor, prediction_id, actual)
        split = self.versions.split
        if split is None:
            return result
        if monitor is split.candidate.monitor:
            _tally_feedback(split.challenger, result)
        elif monitor is self.versions.active.monitor:
            _tally_feedback(split.baseline, result)
            shadow = split.candidate.monitor
            if split.mode == "shadow" and shadow.book.knows(prediction_id):
                _tally_feedback(split.challenger, shadow.feedback(prediction_id, actual))
        return result

    async def command(self, command: Mapping[str, Any]) -> Mapping[str, Any]:
        """Answer one command of the deploy service (or of a sibling worker)."""
        op = command.get("op")
        if op == "status":
            return {**self.versions.status(), "worker": self.worker, "pid": os.getpid()}
        if op == "prepare":
            tag, correlation_id = str(command["tag"]), UUID(str(command["correlation_id"]))
            served = await self.versions.prepare(tag, correlation_id, trace=command.get("trace") or {})
            return {"version": served.version}
        if op == "activate":
            return {"version": (await self.versions.activate(int(command["version"]))).version}
        if op == "discard":
            await self.versions.discard(int(command["version"]))
            return {}
        if op == "split":
            split = await self.versions.start_split(
                str(command["tag"]),
                UUID(str(command["correlation_id"])),
                version=int(command["version"]),
                mode=command["mode"],
                share=float(command["share"]),
                trace=command.get("trace") or {},
            )
            return {"split": split.describe()}
        if op == "split_tallies":
            return {"tallies": self.versions.split.tallies() if self.versions.split else None}
        if op == "split_promote":
            return {"version": (await self.versions.promote_split(int(command["version"]))).version}
        if op == "split_end":
            await self.versions.end_split()
            return {}
        if op == "feedback":
            return {
                "result": self.join(str(command["prediction_id"]), command["actual"]).model_dump(mode="json")
            }
        raise ValueError(f"unknown command {op!r}")

    def performance(self) -> dict[str, Any]:
        """The active version's live figures on this worker, and its model calls."""
        active = self.versions.active
        runtime = active.loaded.card.runtime.model_dump(mode="json")
        return {
            **active.monitor.performance(),
            "model_calls": active.calls,
            "worker": self.worker,
            "runtime": runtime,
        }

    def _served(self, loaded: LoadedModel, correlation_id: UUID, origin: Origin) -> Served:
        return Served.monitored(loaded, correlation_id, origin, settings=self.settings, metrics=self.metrics)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _tally_feedback(tally: WindowTally, result: FeedbackResult) -> None:
    tally.joined(correct=result.correct, absolute_error=result.absolute_error)


PredictionService.add_asgi_middleware(AfterResponse)  # type: ignore[attr-defined]
PredictionService.add_asgi_middleware(JsonOnly)  # type: ignore[attr-defined]
PredictionService.add_asgi_middleware(ErrorObjects)  # type: ignore[attr-defined]
PredictionService.add_asgi_middleware(ServedDocument, service=PredictionService)  # type: ignore[attr-defined]
