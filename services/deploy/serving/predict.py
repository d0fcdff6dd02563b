"""Prediction itself: the one plain function the real-time service and the batch job both call."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.pipeline import Pipeline

from shared.events.envelope import Frozen
from shared.events.serving import ServingRuntime

Task = Literal["classification", "regression"]
Label = float | int | str | bool | None


class FeatureError(ValueError):
    """Rows that do not carry exactly the model's features, or values of the wrong kind."""


RuntimeName = Literal["sklearn", "onnxruntime"]


class RuntimeDecision(ServingRuntime):
    """Which runtime serves a version and why, with the proof's figures (``services.deploy.compile``)."""

    onnx_sha256: str | None = Field(default=None, description="Digest of the ONNX model served.")
    tolerance: float | None = Field(default=None, description="Largest difference allowed in the proof.")
    max_difference: float | None = Field(default=None, description="Largest difference the proof found.")
    rows_checked: int = 0


class ModelCard(Frozen):
    """What a served model expects and answers, stored with it in the BentoML model store."""

    pipeline: str
    version: int = Field(ge=1)
    task: Task
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    classes: tuple[Label, ...] = ()
    sha256: str
    runtime: RuntimeDecision = RuntimeDecision()

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature, numeric first (the order the model was trained with)."""
        return (*self.numeric, *self.categorical)


@dataclass(frozen=True)
class Predictions:
    """Per-row predictions and, for classifiers, class probabilities (rows by classes)."""

    labels: list[Label]
    probabilities: np.ndarray | None

    def probabilities_of(self, row: int, card: ModelCard) -> dict[str, float] | None:
        """One row's probabilities keyed by class label (as text, so JSON keeps them)."""
        if self.probabilities is None:
            return None
        return {str(label): float(p) for label, p in zip(card.classes, self.probabilities[row], strict=True)}


def rows_frame(rows: Sequence[Mapping[str, Any]], card: ModelCard) -> pd.DataFrame:
    """The rows as a frame of the model's features; a missing feature is refused.

    Columns the model does not use (an id, a column the spec excludes, a timestamp) are left out
    rather than refused, as MLflow's schema enforcement does: callers send whole records.
    Built column-block-wise rather than through ``DataFrame.from_records``: for the one-row
    requests of a real-time endpoint, frame construction would otherwise cost more than the model.
    """
    numbers = numeric_matrix(rows, card)
    frame = pd.DataFrame(numbers, columns=list(card.numeric))
    for name in card.categorical:
        frame[name] = pd.Series([row[name] for row in rows], dtype=object)
    return frame


def numeric_matrix(rows: Sequence[Mapping[str, Any]], card: ModelCard) -> np.ndarray:
    """The rows' numeric features as floats (null as NaN), after refusing a row that lacks a feature."""
    expected = card.features
    for index, row in enumerate(rows):
        if any(name not in row for name in expected):
            raise FeatureError(_missing(row.keys(), expected, where=f"row {index}"))
    numbers = np.array([[_number(row[name], name) for name in card.numeric] for row in rows], dtype="float64")
    return numbers.reshape(len(rows), len(card.numeric))


def features_frame(frame: pd.DataFrame, card: ModelCard) -> pd.DataFrame:
    """The model's feature columns of a file's frame (other columns are kept by the caller)."""
    missing = [name for name in card.features if name not in frame.columns]
    if missing:
        raise FeatureError(f"input lacks the model's features {missing}")
    return _typed(frame[list(card.features)], card)


def predict_frame(model: Any, frame: pd.DataFrame, card: ModelCard) -> Predictions:
    """Predict every row of ``frame``; probabilities too when the model is a classifier.

    A scikit-learn pipeline's preprocessing runs once. A classifier's estimator runs once too:
    the label is the class of highest probability, which is how every allow-listed classifier's
    ``predict`` decides (for a forest, ``predict`` is that very arg-max), so a second pass over
    the model would only repeat the work.
    """
    if len(frame) == 0:
        return Predictions(labels=[], probabilities=None if card.task == "regression" else np.empty((0, 0)))
    features, estimator = frame, model
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        features, estimator = model[:-1].transform(frame), model[-1]
    if card.task == "classification" and hasattr(estimator, "predict_proba"):
        probabilities = np.asarray(estimator.predict_proba(features), dtype=float)
        labels = np.asarray(estimator.classes_).take(probabilities.argmax(axis=1)).tolist()
        return Predictions(labels=labels, probabilities=probabilities)
    return Predictions(labels=np.asarray(estimator.predict(features)).tolist(), probabilities=None)


def _typed(frame: pd.DataFrame, card: ModelCard) -> pd.DataFrame:
    """Numeric features as floats (missing as NaN); a value that is not a number is refused.

    Columns already of float64 are left untouched: rewriting them one by one would copy the frame
    and split its one block of floats into a block per column, which makes the model's own
    conversion of the frame to an array several times slower than the model itself.
    """
    converted: dict[str, pd.Series] = {}
    for name in card.numeric:
        column = frame[name]
        if column.dtype == np.float64:
            continue
        numeric_dtype = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if not numeric_dtype and column.map(_not_a_number).any():
            raise FeatureError(f"feature {name!r} must be a number (or null)")
        converted[name] = pd.to_numeric(column, errors="coerce").astype("float64")
    return frame.assign(**converted) if converted else frame


def _not_a_number(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return True
    if value is None or isinstance(value, numbers.Real):
        return False
    return not bool(pd.isna(value))


def _number(value: Any, name: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeatureError(f"feature {name!r} must be a number (or null), not {value!r}")
    return float(value)


def _missing(given: Any, expected: Sequence[str], *, where: str) -> str:
    missing = sorted(set(expected) - set(given))
    return f"{where}: missing features {missing}"
