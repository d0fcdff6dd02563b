"""The BentoML service behind every pipeline endpoint: one approved model version per server.

The deploy service starts BentoML's HTTP workers of this service on a socket it binds (see
``services.deploy.rollout``), with the arguments ``model_tag=<pipeline>:v<N>``,
``correlation_id=<uuid>`` and ``workers=<n>``; ``bentoml serve`` of this class with the same
``--arg`` values runs it too.
"""

from __future__ import annotations

import gc
from uuid import UUID

import bentoml
import pandas as pd
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.deploy.serving.batching import PredictionBatcher
from services.deploy.serving.endpoint import LoadedModel, as_batch, join_feedback, request_frame, respond
from services.deploy.serving.errors import ErrorObjects
from services.deploy.serving.guard import JsonOnly
from services.deploy.serving.io import Rows, RowsInput
from services.deploy.serving.metrics import serving_metrics
from services.deploy.serving.monitor import Monitor
from services.deploy.serving.predict import Predictions, predict_frame
from services.deploy.serving.request_timeout import install as install_request_timeout
from services.deploy.settings import DeploySettings
from shared.clients.serving import FeatureValue, FeedbackResult, PredictionResponse

SERVICE_NAME = "conveyor_prediction"


class ServingArgs(BaseModel):
    """What one server serves (``--arg`` values); the rest comes from CONVEYOR_* settings."""

    model_tag: str = ""
    correlation_id: UUID = UUID(int=0)
    workers: int = Field(default=1, ge=1)


args = bentoml.use_arguments(ServingArgs)
install_request_timeout()


async def _performance(_: Request) -> JSONResponse:
    service: PredictionService = bentoml.get_current_service()
    return JSONResponse({**service.monitor.performance(), "model_calls": service.model_calls})


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
    """One approved model version of one pipeline, with prediction capture and feedback."""

    def __init__(self) -> None:
        settings = DeploySettings()
        self._model_calls = 0
        self.loaded = LoadedModel.from_store(args.model_tag)
        self.batcher = (
            PredictionBatcher(self._predict_frame, max_rows=settings.serving_batch_max_rows)
            if settings.serving_batch_max_rows > 1
            else None
        )
        self.monitor = Monitor(
            card=self.loaded.card,
            settings=settings,
            correlation_id=args.correlation_id,
            metrics=serving_metrics(),
        )

    @bentoml.on_startup
    async def start_monitoring(self) -> None:
        """Start publishing captured predictions, then set what is loaded aside from the collector.

        The imports and the model are some 200,000 objects that live as long as the worker; a
        full collection that walks them all takes 100 ms and more on a busy machine, right on
        the event loop. Frozen, they are skipped, and a full collection takes a few ms.
        """
        await self.monitor.start()
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    async def stop_monitoring(self) -> None:
        """Publish what is still queued, then disconnect."""
        await self.monitor.stop()

    # Async, so the model runs on the worker's event loop: a sync API would hop to BentoML's
    # one-thread pool for every request, which measured 0.5 ms slower per request and a third
    # less throughput at 32 clients; requests queue on the loop either way (no 503 shedding).
    @bentoml.api(route="/v1/predict", input_spec=RowsInput)
    async def predict(self, rows: Rows, /) -> PredictionResponse:
        """Predict one row (an object keyed by feature name) or a list of rows."""
        batch = as_batch(rows)
        frame = request_frame(self.loaded, batch)
        if self.batcher is not None:
            predicted = await self.batcher.predict(frame)
        else:
            predicted = self._predict_frame(frame)
        return respond(self.loaded, batch, predicted, monitor=self.monitor)

    @property
    def model_calls(self) -> int:
        """How many times the model has run (fewer than requests when batching merged them)."""
        return self._model_calls

    def _predict_frame(self, frame: pd.DataFrame) -> Predictions:
        self._model_calls += 1
        return predict_frame(self.loaded.model, frame, self.loaded.card)

    @bentoml.api(route="/v1/feedback")
    async def feedback(self, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
        """Join the ground truth of an earlier prediction to it."""
        return join_feedback(self.monitor, prediction_id, actual)


PredictionService.add_asgi_middleware(JsonOnly)  # type: ignore[attr-defined]
PredictionService.add_asgi_middleware(ErrorObjects)  # type: ignore[attr-defined]
