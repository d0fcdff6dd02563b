"""Warm-up: a version proves itself on rows of its own test split before any request reaches it.

When the deploy service imports an approved version it scores a few rows of the version's test
split in-process and stores those rows with the answers beside the model. A serving worker that
loads the version scores the same rows through its own request path and compares: only a version
that loads, runs and answers as the deploy service computed is ever switched to (TensorFlow
Serving's availability-preserving policy, with the answers checked rather than merely a request run).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from services.deploy.serving.predict import Label, ModelCard, Predictions, features_frame, predict_frame
from shared.events.envelope import Frozen

WARMUP_ROWS = 32
# The same code on the same machine: a difference past this is a broken load, not rounding.
PROBABILITY_TOLERANCE = 1e-9


class WarmupFailed(Exception):
    """A loaded version answered its warm-up rows differently (or not at all)."""


class Warmup(Frozen):
    """Rows of the version's test split (as a client would send them) and the answers they must get."""

    rows: list[dict[str, Any]]
    labels: list[Label]
    probabilities: list[list[float]] | None = None


def sample(model: Any, card: ModelCard, test_split: pd.DataFrame, *, rows: int = WARMUP_ROWS) -> Warmup:
    """The first ``rows`` rows of the test split with the answers ``model`` gives them here."""
    frame = features_frame(test_split.head(rows), card)
    predicted = predict_frame(model, frame, card)
    probabilities = None if predicted.probabilities is None else predicted.probabilities.tolist()
    return Warmup(rows=_as_json_rows(frame), labels=predicted.labels, probabilities=probabilities)


def check(
    warmup: Warmup,
    predicted: Predictions,
    *,
    tolerance: float = PROBABILITY_TOLERANCE,
    regression: bool = False,
) -> None:
    """Refuse a version whose answers to its warm-up rows differ from the recorded ones.

    Labels must be identical and probabilities within ``tolerance``; a regressor's values within
    ``tolerance`` of the recorded ones relative to their size (never less than 1), since ONNX
    Runtime may sum in another order than scikit-learn.
    """
    if regression and len(predicted.labels) == len(warmup.labels):
        want = np.asarray(warmup.labels, dtype=float)
        gap = np.abs(np.asarray(predicted.labels, dtype=float) - want) / np.maximum(np.abs(want), 1.0)
        if not np.all(gap <= tolerance):
            raise WarmupFailed(f"warm-up values differ by up to {float(np.max(gap)):.3g} (relative)")
        return
    if predicted.labels != warmup.labels:
        wrong = sum(a != b for a, b in zip(predicted.labels, warmup.labels, strict=False))
        raise WarmupFailed(f"{wrong} of {len(warmup.labels)} warm-up labels differ from the recorded answers")
    if warmup.probabilities is None:
        return
    if predicted.probabilities is None:
        raise WarmupFailed("the loaded version gives no probabilities for its warm-up rows")
    expected = np.asarray(warmup.probabilities, dtype=float)
    difference = float(
        np.max(np.abs(np.asarray(predicted.probabilities, dtype=float) - expected), initial=0.0)
    )
    if not difference <= tolerance:
        raise WarmupFailed(f"warm-up probabilities differ by up to {difference:.3g}")


def _as_json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{name: _json_value(value) for name, value in row.items()} for row in frame.to_dict("records")]


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
