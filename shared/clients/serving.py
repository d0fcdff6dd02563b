"""The prediction endpoint's contract, and a small client for it.

A pipeline's endpoint answers ``POST /v1/predict`` with one row (an object keyed by feature name)
or a list of rows, and ``POST /v1/feedback`` with the ground truth of an earlier prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field

FeatureValue = float | int | str | bool | None
Row = dict[str, FeatureValue]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prediction(_Model):
    """One row's prediction."""

    prediction_id: str = Field(description="Quote it when sending the ground truth to /v1/feedback.")
    prediction: FeatureValue
    probabilities: dict[str, float] | None = Field(
        default=None, description="Per class, for classifiers; keys are the class labels as text."
    )


class PredictionResponse(_Model):
    """What ``POST /v1/predict`` answers: one prediction per row, in the order sent."""

    pipeline: str
    version: int
    predictions: list[Prediction]


class FeedbackResult(_Model):
    """What ``POST /v1/feedback`` answers once the ground truth is joined to its prediction."""

    prediction_id: str
    version: int
    prediction: FeatureValue
    actual: FeatureValue
    correct: bool | None = Field(default=None, description="Classification only.")
    absolute_error: float | None = Field(default=None, description="Regression only.")


class EndpointPerformance(BaseModel):
    """What ``GET /v1/monitoring/performance`` answers: the live figures of the worker that answered."""

    # Open to figures added later (a new runtime, a new counter): a client must not break on them.
    model_config = ConfigDict(frozen=True, extra="allow")

    pipeline: str
    version: int = Field(description="The version this worker serves.")
    task: Literal["classification", "regression"]
    worker: int = Field(description="The worker that answered: every figure is that worker's own.")
    feedback: int = Field(description="Ground truths joined to this version's predictions so far.")
    unknown: int = Field(description="Feedback refused because no recent prediction had its id.")
    accuracy: float | None = Field(
        default=None, description="Classification only: share of joined predictions that were right."
    )
    mae: float | None = Field(default=None, description="Regression only: mean absolute error so far.")
    captured: int = Field(description="Predictions queued for capture to Kafka.")
    capture_dropped: int = Field(description="Predictions not captured because the queue was full.")
    capture_published: int = Field(description="Captured predictions published to Kafka so far.")
    model_calls: int = Field(description="Calls of the model; requests that arrive together share one.")


class PredictionError(Exception):
    """The endpoint refused or failed a request."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class PredictionClient:
    """Calls one pipeline's prediction endpoint over a kept-alive HTTP connection."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)

    def predict(
        self, rows: Mapping[str, FeatureValue] | Sequence[Mapping[str, FeatureValue]]
    ) -> PredictionResponse:
        """Predictions for one row or a list of rows."""
        body = dict(rows) if isinstance(rows, Mapping) else [dict(row) for row in rows]
        return PredictionResponse.model_validate(self._post("/v1/predict", body))

    def feedback(self, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
        """Send the ground truth of an earlier prediction."""
        body = {"prediction_id": prediction_id, "actual": actual}
        return FeedbackResult.model_validate(self._post("/v1/feedback", body))

    def performance(self) -> dict[str, Any]:
        """Live accuracy (classification) or mean absolute error (regression) from feedback so far."""
        response = self._client.get("/v1/monitoring/performance")
        return _json_or_raise(response)

    def ready(self) -> bool:
        """Whether the endpoint is ready to serve."""
        try:
            return self._client.get("/readyz").status_code == httpx.codes.OK
        except httpx.TransportError:
            return False

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _post(self, path: str, body: Any) -> Any:
        return _json_or_raise(self._client.post(path, json=body))


def _json_or_raise(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        detail: Any = response.json()
    except ValueError:
        detail = response.text
    raise PredictionError(response.status_code, detail)
