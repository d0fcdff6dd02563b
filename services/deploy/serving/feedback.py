"""Ground truth joined to served predictions: live accuracy (classification) or MAE (regression).

Each worker remembers its most recent predictions in a bounded map; ground truth for a
prediction it no longer (or never) held is refused as unknown.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from typing import Any

from services.deploy.serving.predict import Task
from shared.clients.serving import FeatureValue, FeedbackResult


class UnknownPrediction(LookupError):
    """No remembered prediction has that id (expired from the window, or never served here)."""


class FeedbackError(ValueError):
    """Ground truth that cannot be compared with the prediction (a regression target that is not a number)."""


class FeedbackBook:
    """This worker's last ``size`` predictions, and running figures of the feedback joined to them."""

    def __init__(self, *, size: int, task: Task, version: int) -> None:
        self._size = size
        self._task = task
        self._version = version
        self._predictions: OrderedDict[str, FeatureValue] = OrderedDict()
        self._lock = threading.Lock()
        self.joined = 0
        self.unknown = 0
        self.correct = 0
        self.absolute_error_sum = 0.0

    def remember(self, prediction_id: str, prediction: FeatureValue) -> None:
        """Keep a prediction for a later join; the oldest is forgotten past the window."""
        with self._lock:
            self._predictions[prediction_id] = prediction
            if len(self._predictions) > self._size:
                self._predictions.popitem(last=False)

    def knows(self, prediction_id: str) -> bool:
        """Whether a prediction with this id is remembered here."""
        with self._lock:
            return prediction_id in self._predictions

    def join(self, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
        """Join ground truth to its prediction and update the live figures (once per prediction)."""
        with self._lock:
            if prediction_id not in self._predictions:
                self.unknown += 1
                raise UnknownPrediction(f"no recent prediction has id {prediction_id!r}")
            prediction = self._predictions[prediction_id]
            result = self._compare(prediction_id, prediction, actual)
            del self._predictions[prediction_id]
            self.joined += 1
            self.correct += int(bool(result.correct))
            self.absolute_error_sum += result.absolute_error or 0.0
        return result

    def performance(self) -> dict[str, Any]:
        """The live figures so far."""
        with self._lock:
            figures: dict[str, Any] = {
                "version": self._version,
                "task": self._task,
                "feedback": self.joined,
                "unknown": self.unknown,
            }
            if self._task == "classification":
                figures["accuracy"] = self.correct / self.joined if self.joined else None
            else:
                figures["mae"] = self.absolute_error_sum / self.joined if self.joined else None
        return figures

    def _compare(self, prediction_id: str, prediction: FeatureValue, actual: FeatureValue) -> FeedbackResult:
        common = {"prediction_id": prediction_id, "version": self._version}
        if self._task == "classification":
            correct = same_label(prediction, actual)
            return FeedbackResult(**common, prediction=prediction, actual=actual, correct=correct)
        if not _is_number(actual) or not _is_number(prediction):
            raise FeedbackError(f"the actual value of a regression must be a number, not {actual!r}")
        error = abs(float(prediction) - float(actual))  # type: ignore[arg-type]
        return FeedbackResult(**common, prediction=prediction, actual=actual, absolute_error=error)


def same_label(prediction: FeatureValue, actual: FeatureValue) -> bool:
    """Whether two class labels are the same, so 1, 1.0 and "1" from JSON count as one."""
    if _is_number(prediction) and _is_number(actual):
        return float(prediction) == float(actual)  # type: ignore[arg-type]
    return _text(prediction) == _text(actual)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
