"""The runtime a version serves through: scikit-learn, or ONNX Runtime where proven equal.

Both take the same rows and answer the same ``Predictions``: ``inputs_of_rows`` builds what the
runtime takes straight from a request's JSON rows (for ONNX Runtime three arrays, no DataFrame),
``inputs_of_frame`` from a file's typed feature frame (the test split), ``inputs_of_batch`` from a
file's chunk of Arrow columns (batch scoring), and ``predict`` runs the model. The real-time
endpoint, the batch job, the warm-up check and the proof of equality all go through these, so what
is proven is what serves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from services.deploy.serving.predict import (
    ModelCard,
    Predictions,
    RuntimeName,
    features_frame,
    numeric_matrix,
    predict_frame,
    rows_frame,
)
from shared.profile import as_categories, category_key

# The largest difference in a probability (classifiers), or relative to a value's size (regressors),
# that ONNX Runtime may show against scikit-learn. Both compute in double precision and branch on
# the same thresholds; what remains is ONNX's tree operators rounding their sums to float32 once
# (about 1e-7 relative) and the order of floating-point sums elsewhere (about 1e-15).
ONNX_TOLERANCE = 1e-6
# The same code on the same machine: a difference past this is a broken load, not rounding.
SKLEARN_TOLERANCE = 1e-9


@dataclass(frozen=True)
class OnnxInputs:
    """A batch of rows as the ONNX graph takes them (see ``services.deploy.onnx_graph``)."""

    numeric: np.ndarray  # rows x numeric features, float64, NaN where missing
    categorical: np.ndarray  # rows x categorical features, category strings ("" where missing)
    missing: np.ndarray  # rows x categorical features, True where missing

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    @classmethod
    def concat(cls, parts: Sequence[OnnxInputs]) -> OnnxInputs:
        """Several batches as one, in order."""
        return cls(
            numeric=np.concatenate([p.numeric for p in parts]),
            categorical=np.concatenate([p.categorical for p in parts]),
            missing=np.concatenate([p.missing for p in parts]),
        )


Inputs: TypeAlias = pd.DataFrame | OnnxInputs


class Runtime(Protocol):
    """What serves a version's predictions."""

    name: RuntimeName
    card: ModelCard

    def inputs_of_rows(self, rows: Sequence[Mapping[str, Any]]) -> Inputs:
        """A request's rows as this runtime's inputs; a missing or mistyped feature is a FeatureError."""
        ...

    def inputs_of_frame(self, frame: pd.DataFrame) -> Inputs:
        """A typed feature frame (``features_frame``) as this runtime's inputs."""
        ...

    def inputs_of_batch(self, batch: pa.RecordBatch) -> Inputs:
        """A file's chunk as this runtime's inputs (other columns ignored); a missing feature is refused."""
        ...

    def predict(self, inputs: Inputs) -> Predictions:
        """Predict every row of ``inputs``."""
        ...


class SklearnRuntime:
    """The fitted scikit-learn pipeline, fed with DataFrames."""

    name: RuntimeName = "sklearn"

    def __init__(self, model: Any, card: ModelCard) -> None:
        self.model = model
        self.card = card

    def inputs_of_rows(self, rows: Sequence[Mapping[str, Any]]) -> Inputs:
        return rows_frame(rows, self.card)

    def inputs_of_frame(self, frame: pd.DataFrame) -> Inputs:
        return frame

    def inputs_of_batch(self, batch: pa.RecordBatch) -> Inputs:
        return batch_frame(batch, self.card)

    def predict(self, inputs: Inputs) -> Predictions:
        assert isinstance(inputs, pd.DataFrame)
        return predict_frame(self.model, inputs, self.card)


class OnnxRuntime:
    """An ONNX Runtime session of the converted pipeline, fed with arrays."""

    name: RuntimeName = "onnxruntime"

    def __init__(self, data: bytes, card: ModelCard, *, threads: int = 1) -> None:
        import onnxruntime  # only a worker that serves ONNX pays for the import

        options = onnxruntime.SessionOptions()
        # One thread per worker: the endpoint's parallelism is its workers, and a thread pool per
        # session would make them fight over the same cores.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.card = card
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._output = "probabilities" if card.task == "classification" else "variable"
        # An object array: taking from it keeps each label's own Python value (a mixed list would be
        # coerced to one type), at numpy's speed rather than a comprehension's.
        self._classes = np.array(card.classes, dtype=object)

    def inputs_of_rows(self, rows: Sequence[Mapping[str, Any]]) -> Inputs:
        numbers = numeric_matrix(rows, self.card)
        texts = [[category_key(row[name]) for name in self.card.categorical] for row in rows]
        return _onnx_inputs(numbers, texts, len(rows), len(self.card.categorical))

    def inputs_of_frame(self, frame: pd.DataFrame) -> Inputs:
        numbers = frame[list(self.card.numeric)].to_numpy(dtype=np.float64).reshape(len(frame), -1)
        columns = [as_categories(frame[name]).tolist() for name in self.card.categorical]
        return _onnx_inputs(
            numbers, [list(row) for row in zip(*columns, strict=True)], len(frame), len(columns)
        )

    def inputs_of_batch(self, batch: pa.RecordBatch) -> Inputs:
        # A file of numbers only (the common case) goes from Arrow to the graph's matrix without a
        # DataFrame, which cost more than the linear model itself; anything else is typed (and
        # refused, if it must be) through the frame.
        numbers = _float_matrix(batch, self.card) if not self.card.categorical else None
        if numbers is None:
            return self.inputs_of_frame(batch_frame(batch, self.card))
        rows = len(numbers)
        return OnnxInputs(
            numeric=numbers, categorical=np.empty((rows, 0), dtype=object), missing=np.empty((rows, 0), bool)
        )

    def predict(self, inputs: Inputs) -> Predictions:
        assert isinstance(inputs, OnnxInputs)
        if len(inputs) == 0:
            return Predictions(
                labels=[], probabilities=None if self.card.task == "regression" else np.empty((0, 0))
            )
        feeds = {
            "numeric": inputs.numeric,
            "categorical": inputs.categorical,
            "categorical_missing": inputs.missing,
        }
        (out,) = self.session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})
        out = np.asarray(out, dtype=np.float64)
        if self.card.task == "regression":
            return Predictions(labels=out.reshape(-1).tolist(), probabilities=None)
        return Predictions(labels=self._classes.take(out.argmax(axis=1)).tolist(), probabilities=out)


def batch_frame(batch: pa.RecordBatch, card: ModelCard) -> pd.DataFrame:
    """A chunk's feature columns as a typed frame (``features_frame``, which names any missing)."""
    present = [name for name in card.features if name in batch.schema.names]
    return features_frame(batch.select(present).to_pandas(), card)


def _float_matrix(batch: pa.RecordBatch, card: ModelCard) -> np.ndarray | None:
    """The numeric features as one C-ordered float64 matrix (null as NaN), or None unless all are numbers."""
    names = batch.schema.names
    if any(name not in names for name in card.numeric):
        return None
    columns = [batch.column(name) for name in card.numeric]
    if not all(pa.types.is_floating(c.type) or pa.types.is_integer(c.type) for c in columns):
        return None
    matrix = np.empty((batch.num_rows, len(columns)), dtype=np.float64)
    for index, column in enumerate(columns):
        if column.null_count:
            column = column.cast(pa.float64())  # to_numpy gives NaN for a float column's nulls
        matrix[:, index] = column.to_numpy(zero_copy_only=False)
    return matrix


def concat_inputs(parts: Sequence[Inputs]) -> Inputs:
    """Several requests' inputs as one batch for one model call."""
    if isinstance(parts[0], OnnxInputs):
        return OnnxInputs.concat([p for p in parts if isinstance(p, OnnxInputs)])
    return pd.concat(parts, ignore_index=True)


def difference(expected: Predictions, actual: Predictions, card: ModelCard) -> tuple[float, str | None]:
    """How far ``actual`` is from ``expected``, and why they disagree (None when only by rounding).

    Labels must be identical for a classifier; its probabilities are compared absolutely, a
    regressor's values relative to their size (never less than 1).
    """
    if len(actual.labels) != len(expected.labels):
        return math.inf, f"{len(actual.labels)} answers for {len(expected.labels)} rows"
    if card.task == "regression":
        want = np.asarray(expected.labels, dtype=float)
        got = np.asarray(actual.labels, dtype=float)
        return _largest(np.abs(got - want) / np.maximum(np.abs(want), 1.0)), None
    wrong = sum(a != b for a, b in zip(actual.labels, expected.labels, strict=True))
    if wrong:
        return math.inf, f"{wrong} of {len(expected.labels)} labels differ"
    if expected.probabilities is None or actual.probabilities is None:
        return 0.0, None
    got, want = np.asarray(actual.probabilities, dtype=float), np.asarray(expected.probabilities, dtype=float)
    if got.shape != want.shape:
        return math.inf, f"probabilities of shape {got.shape}, expected {want.shape}"
    return _largest(np.abs(got - want)), None


def _largest(values: np.ndarray) -> float:
    if values.size and not np.all(np.isfinite(values)):
        return math.inf
    return float(np.max(values, initial=0.0))


def _onnx_inputs(numbers: np.ndarray, texts: list[list[object]], rows: int, width: int) -> OnnxInputs:
    missing = np.array([[not isinstance(t, str) for t in row] for row in texts], dtype=bool).reshape(
        rows, width
    )
    categorical = np.array(
        [[t if isinstance(t, str) else "" for t in row] for row in texts], dtype=object
    ).reshape(rows, width)
    return OnnxInputs(numeric=numbers, categorical=categorical, missing=missing)
