"""What the BentoML routes do, as plain functions over the loaded model (kept out of the service class)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bentoml.exceptions import BadInput, NotFound

from services.deploy.serving.feedback import FeedbackError, UnknownPrediction
from services.deploy.serving.model_store import load_runtime
from services.deploy.serving.monitor import Monitor
from services.deploy.serving.predict import FeatureError, ModelCard, Predictions
from services.deploy.serving.runtime import ONNX_TOLERANCE, Inputs, Runtime, SklearnRuntime
from services.deploy.serving.warmup import PROBABILITY_TOLERANCE, check
from shared.clients.serving import FeatureValue, FeedbackResult, Prediction, PredictionResponse

Rows = Mapping[str, Any] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve, with the card that says what it expects and the runtime that serves it.

    ``model`` is the scikit-learn pipeline (None when ONNX Runtime serves: the worker never
    rebuilds a pipeline it does not run); ``runtime`` defaults to scikit-learn over ``model``.
    """

    model: Any
    card: ModelCard
    runtime: Runtime = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.runtime is None:
            object.__setattr__(self, "runtime", SklearnRuntime(self.model, self.card))

    @classmethod
    def from_store(cls, tag: str, *, threads: int | None = None) -> LoadedModel:
        """Load a version from the BentoML store, verified against its digests and warmed up on its rows.

        The runtime is the one the card names (ONNX Runtime with ``threads`` intra-op threads, by
        default ``CONVEYOR_SERVING_ONNX_THREADS``). The warm-up rows go through the request path
        itself (rows to the runtime's inputs to the model) and are compared with the answers
        scikit-learn gave at import: exactly for scikit-learn, within the proven tolerance for ONNX.
        """
        if threads is None:
            from services.deploy.settings import DeploySettings

            threads = DeploySettings().serving_onnx_threads
        runtime, model, warmup = load_runtime(tag, threads=threads)
        loaded = cls(model=model, card=runtime.card, runtime=runtime)
        tolerance = ONNX_TOLERANCE if runtime.name == "onnxruntime" else PROBABILITY_TOLERANCE
        predicted = runtime.predict(request_inputs(loaded, warmup.rows))
        check(warmup, predicted, tolerance=tolerance, regression=runtime.card.task == "regression")
        return loaded


def answer(
    loaded: LoadedModel, rows: Rows, *, monitor: Monitor | None = None, worker: int = 1
) -> PredictionResponse:
    """Predict one row or a list of rows; rows with missing features are refused (400)."""
    batch = as_batch(rows)
    predicted = loaded.runtime.predict(request_inputs(loaded, batch))
    return respond(loaded, batch, predicted, monitor=monitor, worker=worker)


def as_batch(rows: Rows) -> list[Mapping[str, Any]]:
    """A request's rows as a list (one row is a list of one)."""
    return [rows] if isinstance(rows, Mapping) else list(rows)


def request_inputs(loaded: LoadedModel, batch: Sequence[Mapping[str, Any]]) -> Inputs:
    """The request's rows as the runtime's inputs; missing features are a 400, others are ignored."""
    try:
        return loaded.runtime.inputs_of_rows(batch)
    except FeatureError as error:
        raise BadInput(str(error)) from None


def respond(
    loaded: LoadedModel,
    batch: Sequence[Mapping[str, Any]],
    predicted: Predictions,
    *,
    monitor: Monitor | None = None,
    worker: int = 1,
) -> PredictionResponse:
    """The answer to a request: one prediction per row, each with an id, captured when monitored.

    The id names the worker that remembers the prediction, so feedback sent to any worker of the
    endpoint finds it.
    """
    ids = [prediction_id(worker) for _ in batch]
    if monitor is not None:
        monitor.observe(ids, batch, predicted.labels)
    return PredictionResponse(
        pipeline=loaded.card.pipeline,
        version=loaded.card.version,
        predictions=[
            Prediction(
                prediction_id=ids[row],
                prediction=predicted.labels[row],
                probabilities=predicted.probabilities_of(row, loaded.card),
            )
            for row in range(len(batch))
        ],
    )


def prediction_id(worker: int) -> str:
    """A new prediction id of ``worker``'s."""
    return f"w{worker}-{uuid.uuid4().hex}"


def worker_of(prediction_id: str) -> int | None:
    """The worker that served a prediction, from its id (None for an id of no worker's)."""
    head, dash, _ = prediction_id.partition("-")
    if not dash or not head.startswith("w") or not head[1:].isdigit():
        return None
    return int(head[1:])


def join_feedback(monitor: Monitor, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
    """Join ground truth to an earlier prediction: 404 when it is not remembered, 400 when not comparable."""
    try:
        return monitor.feedback(prediction_id, actual)
    except UnknownPrediction as error:
        raise NotFound(str(error)) from None
    except FeedbackError as error:
        raise BadInput(str(error)) from None
