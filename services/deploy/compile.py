"""Compiled inference, proven equal: a version serves through ONNX Runtime only where it answers
its whole test split as scikit-learn does.

At import (``services.deploy.artifacts``) the fitted pipeline is converted (``onnx_graph``) and
both runtimes score every row of the version's test split through the same input path the
endpoint uses. Labels must be identical and probabilities (a regressor's values, relative to their
size) within ``ONNX_TOLERANCE``; otherwise the version serves with scikit-learn and the card says
why. Either way the decision is recorded like any other lineage fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from services.deploy.onnx_graph import Unconvertible, convert
from services.deploy.serving.predict import ModelCard, RuntimeDecision, features_frame
from services.deploy.serving.runtime import ONNX_TOLERANCE, OnnxRuntime, SklearnRuntime, difference
from shared.storage import sha256_hex

_REASON_CHARS = 600


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime a version serves with, and the ONNX bytes when it is ONNX Runtime."""

    runtime: RuntimeDecision
    onnx: bytes | None = None


def choose_runtime(
    model: Any,
    card: ModelCard,
    test_split: pd.DataFrame,
    *,
    enabled: bool = True,
    tolerance: float = ONNX_TOLERANCE,
) -> RuntimeChoice:
    """ONNX Runtime when the converted pipeline answers the whole test split as ``model`` does."""
    if not enabled:
        return RuntimeChoice(RuntimeDecision(reason="ONNX Runtime is turned off (CONVEYOR_SERVING_ONNX)"))
    frame = features_frame(test_split, card)
    if frame.empty:
        return RuntimeChoice(RuntimeDecision(reason="the test split is empty: nothing proves ONNX equal"))
    try:
        data = convert(model, card)
    except Unconvertible as error:
        return RuntimeChoice(RuntimeDecision(reason=f"not converted to ONNX: {_short(error)}"))
    return prove(model, card, frame, data, tolerance=tolerance)


def prove(
    model: Any, card: ModelCard, frame: pd.DataFrame, data: bytes, *, tolerance: float
) -> RuntimeChoice:
    """Serve ``data`` (an ONNX model) only if it answers every row of ``frame`` as ``model`` does."""
    expected = SklearnRuntime(model, card).predict(frame)
    try:
        onnx = OnnxRuntime(data, card)
        actual = onnx.predict(onnx.inputs_of_frame(frame))
    except Exception as error:  # onnxruntime's own errors: a graph it cannot load or run is no proof
        return RuntimeChoice(
            RuntimeDecision(reason=f"ONNX Runtime could not run the converted model: {_short(error)}")
        )
    gap, disagreement = difference(expected, actual, card)
    facts = {"tolerance": tolerance, "rows_checked": len(frame)}
    if disagreement is not None or not gap <= tolerance:
        why = disagreement or f"{_compared(card)} differ by up to {gap:.3g}, more than {tolerance:g}"
        return RuntimeChoice(
            RuntimeDecision(
                reason=f"ONNX differs from scikit-learn on the test split: {why}",
                max_difference=gap if gap != float("inf") else None,
                **facts,
            )
        )
    what = "labels identical, " if card.task == "classification" else ""
    return RuntimeChoice(
        RuntimeDecision(
            name="onnxruntime",
            reason=(
                f"proven equal on all {len(frame)} test-split rows: {what}"
                f"{_compared(card)} within {gap:.2g} (tolerance {tolerance:g})"
            ),
            onnx_sha256=sha256_hex(data),
            max_difference=gap,
            **facts,
        ),
        onnx=data,
    )


def _short(error: Exception) -> str:
    """An error's first line, bounded: skl2onnx may quote a whole forest's attributes."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _compared(card: ModelCard) -> str:
    return "probabilities" if card.task == "classification" else "values (relative)"
