"""Python clients of Conveyor's HTTP APIs."""

from shared.clients.serving import (
    FeedbackResult,
    Prediction,
    PredictionClient,
    PredictionError,
    PredictionResponse,
)

__all__ = ["FeedbackResult", "Prediction", "PredictionClient", "PredictionError", "PredictionResponse"]
