"""Scoring models on held-out data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris

from services.evaluate.metrics import Scores, score_model
from services.train.fitting import build_pipeline
from shared.pipeline_spec import PipelineSpec


@dataclass
class FixedModel:
    """A stand-in model that answers with the given predictions, whatever the rows."""

    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    feature_names_in_: tuple[str, ...] = ("x",)

    @property
    def classes_(self) -> np.ndarray:
        return np.array(self.classes)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.predictions)

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.probabilities, dtype=float)


def make_spec(**fields: Any) -> PipelineSpec:
    validation = {"min_group_rows": 2} | fields.pop("validation", {})
    base = {"name": "p", "target": "y", "task": "classification", "validation": validation}
    return PipelineSpec.from_mapping(base | fields)


def test_binary_metrics_match_hand_computed_values() -> None:
    test = pd.DataFrame({"x": range(4), "y": ["no", "no", "yes", "yes"]})
    model = FixedModel(
        predictions=["no", "yes", "yes", "yes"],
        probabilities=[[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]],
        classes=["no", "yes"],
    )
    scores = score_model(model, test, spec=make_spec())
    m = scores.metrics
    assert m["accuracy"] == pytest.approx(0.75)
    # Precision: no 1/1, yes 2/3; recall: no 1/2, yes 2/2.
    assert m["precision_macro"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["recall_macro"] == pytest.approx((0.5 + 1) / 2)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    # Every "yes" scores above every "no": a perfect ranking.
    assert m["roc_auc"] == pytest.approx(1.0)
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.8, 0.7]))
    assert m["log_loss"] == pytest.approx(expected_loss)
    assert scores.labels == ["no", "yes"]
    assert scores.confusion_matrix == [[1, 1], [0, 2]]
    assert scores.rows == 4


def test_undefined_metrics_are_named_not_nan() -> None:
    test = pd.DataFrame({"x": range(3), "y": [1, 1, 1]})
    model = FixedModel(predictions=[1, 1, 0], probabilities=[[0.2, 0.8]] * 3, classes=[0, 1])
    scores = score_model(model, test, spec=make_spec())
    assert "roc_auc" not in scores.metrics
    assert "single class" in scores.undefined["roc_auc"]
    assert all(math.isfinite(v) for v in scores.metrics.values())


def test_breast_cancer_model_scores_well() -> None:
    data = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "y"})
    train, test = data.iloc[::2], data.iloc[1::2]
    spec = make_spec(
        estimator={"path": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}
    )
    features = [c for c in data.columns if c != "y"]
    model = build_pipeline(spec, numeric=features, categorical=[]).fit(train[features], train["y"])
    scores = score_model(model, test, spec=spec)
    assert scores.metrics["accuracy"] > 0.9
    assert scores.metrics["roc_auc"] > 0.95
    assert 0 < scores.metrics["log_loss"] < 0.3
    assert sum(map(sum, scores.confusion_matrix)) == len(test)
    assert Scores.model_validate_json(scores.model_dump_json()) == scores


def test_multiclass_roc_auc_is_one_vs_rest() -> None:
    data = load_iris(as_frame=True).frame.rename(columns={"target": "y"})
    spec = make_spec(estimator={"path": "sklearn.naive_bayes.GaussianNB"})
    features = [c for c in data.columns if c != "y"]
    model = build_pipeline(spec, numeric=features, categorical=[]).fit(data[features], data["y"])
    scores = score_model(model, data, spec=spec)
    assert scores.labels == ["0", "1", "2"]
    assert 0.9 < scores.metrics["roc_auc"] <= 1.0


def test_regression_metrics_and_residuals() -> None:
    test = pd.DataFrame({"x": range(4), "y": [1.0, 2.0, 3.0, 4.0]})
    model = FixedModel(predictions=[1.5, 2.0, 2.0, 5.0])
    scores = score_model(model, test, spec=make_spec(task="regression"))
    residuals = np.array([-0.5, 0.0, 1.0, -1.0])
    assert scores.metrics["rmse"] == pytest.approx(math.sqrt(np.mean(residuals**2)))
    assert scores.metrics["mae"] == pytest.approx(np.mean(np.abs(residuals)))
    assert scores.metrics["r2"] == pytest.approx(1 - np.sum(residuals**2) / 5.0)
    assert scores.residuals is not None
    assert scores.residuals.mean == pytest.approx(-0.125)
    assert (scores.residuals.min, scores.residuals.max) == (-1.0, 1.0)
    assert scores.points == [(1.5, 1.0), (2.0, 2.0), (2.0, 3.0), (5.0, 4.0)]
    assert scores.confusion_matrix == []


def test_metrics_per_sensitive_group() -> None:
    test = pd.DataFrame(
        {
            "x": range(7),
            "group": ["A", "A", "A", "A", "B", "B", "C"],
            "y": [1, 1, 0, 0, 1, 0, 1],
        }
    )
    model = FixedModel(
        predictions=[1, 1, 1, 0, 0, 0, 1],
        probabilities=[[0.3, 0.7]] * 7,
        classes=[0, 1],
    )
    scores = score_model(model, test, spec=make_spec(sensitive_attribute="group"))
    # C has one row, under min_group_rows = 2.
    assert set(scores.by_group) == {"A", "B"}
    a, b = scores.by_group["A"], scores.by_group["B"]
    assert a.rows == 4 and a.metrics["accuracy"] == pytest.approx(0.75)
    assert a.metrics["positive_rate"] == pytest.approx(0.75)
    assert a.metrics["true_positive_rate"] == pytest.approx(1.0)
    assert b.metrics["accuracy"] == pytest.approx(0.5)
    assert b.metrics["positive_rate"] == pytest.approx(0.0)
    assert scores.group_gaps["positive_rate"] == pytest.approx(0.75)
    assert scores.sensitive_attribute == "group"


def test_rows_without_target_are_not_scored() -> None:
    test = pd.DataFrame({"x": range(3), "y": [1.0, None, 3.0]})
    model = FixedModel(predictions=[1.0, 3.0])
    assert score_model(model, test, spec=make_spec(task="regression")).rows == 2
