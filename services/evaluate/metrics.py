"""Scoring a fitted model on held-out data: task metrics, overall and per sensitive group."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from shared.events.envelope import Frozen
from shared.pipeline_spec import PipelineSpec, Task, resolve_features
from shared.profile import as_categories

MAX_POINTS = 1000


class GroupScores(Frozen):
    """Metrics of the rows of one sensitive group."""

    rows: int
    metrics: dict[str, float]


class ResidualSummary(Frozen):
    """Distribution of actual minus predicted."""

    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[str, float]


class Scores(Frozen):
    """What a model measured on a test set; undefined metrics are named, not NaN."""

    task: Task
    rows: int
    metrics: dict[str, float]
    undefined: dict[str, str] = Field(default_factory=dict, description="metric -> why")
    labels: list[str] = Field(default_factory=list)
    confusion_matrix: list[list[int]] = Field(
        default_factory=list, description="Rows: actual label, columns: predicted label."
    )
    residuals: ResidualSummary | None = None
    points: list[tuple[float, float]] = Field(
        default_factory=list, description="(predicted, actual) for up to MAX_POINTS rows."
    )
    sensitive_attribute: str | None = None
    by_group: dict[str, GroupScores] = Field(default_factory=dict)
    group_gaps: dict[str, float] = Field(
        default_factory=dict, description="Per metric, best group minus worst group."
    )


def score_model(model: Any, test_frame: pd.DataFrame, *, spec: PipelineSpec) -> Scores:
    """Score a fitted pipeline on ``test_frame`` (rows without a target are left out)."""
    frame = test_frame[test_frame[spec.target].notna()].reset_index(drop=True)
    if frame.empty:
        raise ValueError("the test set has no labelled rows")
    columns = getattr(model, "feature_names_in_", None)
    if columns is None:
        columns = resolve_features(spec, frame).columns
    x, y = frame[list(columns)], frame[spec.target]
    if spec.task == "classification":
        scores = _classification(model, x, y, spec=spec)
    else:
        scores = _regression(model, x, y)
    attribute = spec.sensitive_attribute
    if attribute is None or attribute not in frame.columns:
        return scores
    by_group = _by_group(model, x, y, groups=frame[attribute], spec=spec)
    return scores.model_copy(
        update={"sensitive_attribute": attribute, "by_group": by_group, "group_gaps": _gaps(by_group)}
    )


def _classification(model: Any, x: pd.DataFrame, y: pd.Series, *, spec: PipelineSpec) -> Scores:
    classes = list(model.classes_)
    predicted = model.predict(x)
    proba = model.predict_proba(x)
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision_macro": float(precision_score(y, predicted, average="macro", zero_division=0)),
        "recall_macro": float(recall_score(y, predicted, average="macro", zero_division=0)),
        "f1_macro": float(f1_score(y, predicted, average="macro", zero_division=0)),
    }
    undefined: dict[str, str] = {}
    for name, compute in (
        ("roc_auc", lambda: _roc_auc(y, proba, classes=classes)),
        ("log_loss", lambda: log_loss(y, proba, labels=classes)),
    ):
        _measure(name, compute, metrics=metrics, undefined=undefined)
    labels = classes + [label for label in pd.unique(y) if label not in classes]
    matrix = confusion_matrix(y, predicted, labels=labels)
    return Scores(
        task="classification",
        rows=len(y),
        metrics=metrics,
        undefined=undefined,
        labels=[str(label) for label in as_categories(pd.Series(labels, dtype=object))],
        confusion_matrix=matrix.astype(int).tolist(),
    )


def _roc_auc(y: pd.Series, proba: np.ndarray, *, classes: list[Any]) -> float:
    if y.nunique() < 2:
        raise ValueError("the test set holds a single class")
    if len(classes) == 2:
        # Either class may be called positive: the area is the same.
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def _regression(model: Any, x: pd.DataFrame, y: pd.Series) -> Scores:
    predicted = np.asarray(model.predict(x), dtype=float)
    actual = y.to_numpy(dtype=float)
    metrics = {
        "rmse": float(root_mean_squared_error(actual, predicted)),
        "mae": float(mean_absolute_error(actual, predicted)),
    }
    undefined: dict[str, str] = {}
    if len(actual) >= 2 and np.ptp(actual) > 0:
        metrics["r2"] = float(r2_score(actual, predicted))
    else:
        undefined["r2"] = "needs at least two different target values"
    residual = actual - predicted
    picked = np.unique(np.linspace(0, len(actual) - 1, min(len(actual), MAX_POINTS)).astype(int))
    return Scores(
        task="regression",
        rows=len(actual),
        metrics=metrics,
        undefined=undefined,
        residuals=ResidualSummary(
            mean=float(residual.mean()),
            std=float(residual.std(ddof=1)) if len(residual) > 1 else 0.0,
            min=float(residual.min()),
            max=float(residual.max()),
            quantiles={f"p{q}": float(np.percentile(residual, q)) for q in (5, 25, 50, 75, 95)},
        ),
        points=[(float(predicted[i]), float(actual[i])) for i in picked],
    )


def _by_group(
    model: Any, x: pd.DataFrame, y: pd.Series, *, groups: pd.Series, spec: PipelineSpec
) -> dict[str, GroupScores]:
    """Metrics per sensitive group, for groups of at least ``min_group_rows`` rows."""
    keys = as_categories(groups)
    sizes = keys.value_counts()
    kept = sorted(str(k) for k in sizes[sizes >= spec.validation.min_group_rows].index)
    if not kept:
        return {}
    predicted = pd.Series(model.predict(x), index=x.index)
    positive = _positive(y, spec=spec, classes=list(getattr(model, "classes_", [])))
    result = {}
    for key in kept:
        rows = keys == key
        result[key] = GroupScores(
            rows=int(rows.sum()),
            metrics=_group_metrics(y[rows], predicted[rows], spec=spec, positive=positive),
        )
    return result


def _group_metrics(
    y: pd.Series, predicted: pd.Series, *, spec: PipelineSpec, positive: str | None
) -> dict[str, float]:
    if spec.task == "regression":
        actual, guess = y.to_numpy(dtype=float), predicted.to_numpy(dtype=float)
        return {
            "rmse": float(root_mean_squared_error(actual, guess)),
            "mae": float(mean_absolute_error(actual, guess)),
            "mean_residual": float(np.mean(actual - guess)),
        }
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, average="macro", zero_division=0)),
    }
    if positive is not None:
        is_positive = as_categories(y) == positive
        said_positive = as_categories(predicted) == positive
        # Selection rate and true-positive rate: the figures of demographic parity and
        # equal opportunity across groups.
        metrics["positive_rate"] = float(said_positive.mean())
        if is_positive.any():
            metrics["true_positive_rate"] = float(said_positive[is_positive].mean())
    return metrics


def _positive(y: pd.Series, *, spec: PipelineSpec, classes: list[Any]) -> str | None:
    if spec.positive_label is not None:
        return str(as_categories(pd.Series([spec.positive_label], dtype=object)).iloc[0])
    if len(classes) == 2:
        return str(as_categories(pd.Series(classes, dtype=object)).iloc[1])
    return None


def _gaps(by_group: dict[str, GroupScores]) -> dict[str, float]:
    if len(by_group) < 2:
        return {}
    names = set.intersection(*(set(g.metrics) for g in by_group.values()))
    return {
        name: max(g.metrics[name] for g in by_group.values())
        - min(g.metrics[name] for g in by_group.values())
        for name in sorted(names)
    }


def _measure(
    name: str,
    compute: Callable[[], float],
    *,
    metrics: dict[str, float],
    undefined: dict[str, str],
) -> None:
    try:
        value = float(compute())
    except ValueError as error:
        undefined[name] = str(error)
        return
    if math.isfinite(value):
        metrics[name] = value
    else:
        undefined[name] = f"not finite ({value})"
