"""The named transformers a fitted pipeline may hold besides scikit-learn's own.

They live here, importable wherever Conveyor is, and are on the skops allow-list
(``shared.model_format``): a model that travels to serving carries them, so derived columns are
computed by the same code in training, real-time serving and batch scoring. Their parameters are
plain text, tuples and numbers, so skops stores them without pickling anything.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from shared.features.expressions import BOOLEAN, NUMBER, TEXT, Kind, Node, evaluate, parse


class DerivedColumns(TransformerMixin, BaseEstimator):
    """Adds each ``(name, expression)`` of ``derived`` as a column, in order, to a frame.

    ``numeric`` and ``categorical`` name the input columns and so their kinds; a derived column can
    use those declared before it. Booleans become 1.0 / 0.0, so the model sees numbers.
    """

    def __init__(
        self,
        derived: tuple[tuple[str, str], ...] = (),
        numeric: tuple[str, ...] = (),
        categorical: tuple[str, ...] = (),
    ) -> None:
        self.derived = derived
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, frame: pd.DataFrame, y: Any = None) -> DerivedColumns:
        """Check every expression against the input columns (nothing is learnt)."""
        self.kinds_ = {name: model_kind(node) for name, node in _compiled(self._key())}
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the derived columns added after its own."""
        frame = pd.DataFrame(frame)
        added: dict[str, np.ndarray] = {}
        for (name, _), (_, node) in zip(self.derived, _compiled(self._key()), strict=True):
            values = evaluate(node, frame.assign(**added) if added else frame)
            added[name] = values.astype("float64") if node.kind == BOOLEAN else values
        return frame.assign(**added)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The input's columns, then the derived ones."""
        return np.asarray(
            [*self.numeric, *self.categorical, *(name for name, _ in self.derived)], dtype=object
        )

    def _key(self) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]:
        pairs = tuple((str(name), str(text)) for name, text in self.derived)
        return pairs, tuple(self.numeric), tuple(self.categorical)


def input_kinds(*, numeric: tuple[str, ...], categorical: tuple[str, ...]) -> dict[str, Kind]:
    """The kind an expression sees for each input column: numbers, or category text."""
    return {name: NUMBER for name in numeric} | {name: TEXT for name in categorical}


def model_kind(node: Node) -> Kind:
    """The kind of a derived column as the model (and a later expression) sees it: booleans are 1.0 / 0.0."""
    return NUMBER if node.kind == BOOLEAN else node.kind


@lru_cache(maxsize=256)
def _compiled(
    key: tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]],
) -> tuple[tuple[str, Node], ...]:
    # Parsing is cached per model: a real-time request pays only for the evaluation.
    derived, numeric, categorical = key
    columns = input_kinds(numeric=numeric, categorical=categorical)
    nodes: list[tuple[str, Node]] = []
    for name, text in derived:
        node = parse(text, columns)
        columns[name] = model_kind(node)
        nodes.append((name, node))
    return tuple(nodes)


def derived_kinds(
    derived: tuple[tuple[str, str], ...], *, numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> dict[str, Kind]:
    """The model kind of each derived column; raises ``ExpressionError`` at the first bad expression."""
    return {name: model_kind(node) for name, node in _compiled((derived, numeric, categorical))}


class LogTransform(TransformerMixin, BaseEstimator):
    """``sign(x) * log1p(|x|)`` of the named columns: long tails tamed, zero and negatives kept.

    scikit-learn's ``FunctionTransformer`` would do it, but it holds an arbitrary callable, which
    no allow-list can vouch for; this class does one thing and is safe to load.
    """

    def __init__(self, columns: tuple[str, ...] = ()) -> None:
        self.columns = columns

    def fit(self, frame: pd.DataFrame, y: Any = None) -> LogTransform:
        """Check the columns are there (nothing is learnt)."""
        missing = [c for c in self.columns if c not in pd.DataFrame(frame).columns]
        if missing:
            raise ValueError(f"log transform of columns the data lacks: {missing}")
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the named columns log-transformed."""
        frame = pd.DataFrame(frame)
        values = {
            name: np.sign(numbers) * np.log1p(np.abs(numbers))
            for name in self.columns
            for numbers in [pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")]
        }
        return frame.assign(**values)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The same columns as the input."""
        return np.asarray(input_features if input_features is not None else self.columns, dtype=object)
