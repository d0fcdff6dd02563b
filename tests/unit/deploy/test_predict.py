"""The one prediction function both the endpoint and the batch job call."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from services.deploy.serving.predict import FeatureError, ModelCard, features_frame, predict_frame, rows_frame
from shared.pipeline_spec import ESTIMATORS
from tests.unit.deploy.conftest import Fitted


def test_rows_become_the_models_feature_frame(classifier: Fitted) -> None:
    rows: list[dict[str, object]] = [
        {"plan": "pro", "age": 31, "income": 42_000.5},
        {"age": None, "income": 1, "plan": None},
    ]
    frame = rows_frame(rows, classifier.card)
    assert list(frame.columns) == ["age", "income", "plan"]
    assert frame["age"].dtype == np.float64 and math.isnan(frame["age"][1])
    assert frame["plan"].tolist() == ["pro", None]


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"age": 1, "plan": "pro"}, "missing features ['income']"),
        ({"age": "old", "income": 2, "plan": "pro"}, "'age' must be a number"),
        ({"age": True, "income": 2, "plan": "pro"}, "'age' must be a number"),
    ],
)
def test_rows_with_missing_or_mistyped_features_are_refused(
    classifier: Fitted, row: dict[str, object], words: str
) -> None:
    with pytest.raises(FeatureError, match=words.replace("[", r"\[").replace("]", r"\]")):
        rows_frame([row], classifier.card)


def test_columns_the_model_does_not_use_are_left_out_not_refused(classifier: Fitted) -> None:
    row = {"age": 31.0, "income": 42_000.0, "plan": "pro"}
    extra = {"customer_id": "c-17", **row, "seen_at": "2026-12-02T10:00:00Z", "colour": None}
    frame = rows_frame([extra], classifier.card)
    assert list(frame.columns) == ["age", "income", "plan"]
    assert frame.equals(rows_frame([row], classifier.card))


def test_predictions_equal_the_models_own(classifier: Fitted) -> None:
    frame = classifier.frame.head(50)
    predicted = predict_frame(classifier.model, frame, classifier.card)
    assert predicted.labels == classifier.model.predict(frame).tolist()
    assert predicted.probabilities is not None
    np.testing.assert_allclose(np.asarray(predicted.probabilities), classifier.model.predict_proba(frame))
    assert predicted.probabilities_of(0, classifier.card) == pytest.approx(
        dict(zip(["no", "yes"], classifier.model.predict_proba(frame)[0], strict=True))
    )


def test_a_bare_estimator_predicts_too(classifier: Fitted) -> None:
    numeric = classifier.frame[["age", "income"]]
    estimator = LogisticRegression().fit(numeric, classifier.model.predict(classifier.frame))
    card = classifier.card.model_copy(update={"categorical": ()})
    predicted = predict_frame(estimator, numeric.head(5), card)
    assert predicted.labels == estimator.predict(numeric.head(5)).tolist()
    np.testing.assert_allclose(np.asarray(predicted.probabilities), estimator.predict_proba(numeric.head(5)))


def test_regressors_answer_numbers_without_probabilities(regressor: Fitted) -> None:
    frame = regressor.frame.head(5)
    predicted = predict_frame(regressor.model, frame, regressor.card)
    assert predicted.probabilities is None
    np.testing.assert_allclose(np.asarray(predicted.labels, dtype=float), regressor.model.predict(frame))
    assert predicted.probabilities_of(0, regressor.card) is None


def test_a_files_frame_keeps_only_the_features_and_must_have_them_all(classifier: Fitted) -> None:
    frame = classifier.frame.assign(customer_id=range(len(classifier.frame)))
    assert list(features_frame(frame, classifier.card).columns) == ["age", "income", "plan"]
    with pytest.raises(FeatureError, match="lacks the model's features"):
        features_frame(frame.drop(columns=["income"]), classifier.card)


def test_an_empty_frame_predicts_nothing(classifier: Fitted) -> None:
    predicted = predict_frame(classifier.model, classifier.frame.head(0), classifier.card)
    assert predicted.labels == []


@pytest.mark.parametrize("path", sorted(p for p, task in ESTIMATORS.items() if task == "classification"))
def test_every_allowed_classifier_labels_as_its_own_predict_would(path: str) -> None:
    # One pass over the model: the label is the arg-max of predict_proba, which must be what the
    # estimator's own predict answers, on three classes with string labels.
    features, target = load_iris(return_X_y=True, as_frame=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[target]
    module, name = path.rsplit(".", 1)
    estimator = getattr(importlib.import_module(module), name)()
    estimator.fit(features, labels)
    card = ModelCard(
        pipeline="iris",
        version=1,
        task="classification",
        numeric=tuple(features.columns),
        classes=tuple(estimator.classes_),
        sha256="0" * 64,
    )
    predicted = predict_frame(estimator, features, card)
    assert predicted.labels == estimator.predict(features).tolist()
    np.testing.assert_allclose(np.asarray(predicted.probabilities), estimator.predict_proba(features))


def test_a_files_float_features_are_used_as_they_are_and_other_numbers_become_floats(
    classifier: Fitted,
) -> None:
    frame = classifier.frame.assign(customer_id=range(len(classifier.frame)))
    features = features_frame(frame, classifier.card)
    assert np.shares_memory(features["age"].to_numpy(), frame["age"].to_numpy())  # not copied
    with_ints = features_frame(frame.astype({"age": "int64", "income": "float32"}), classifier.card)
    assert with_ints["age"].dtype == with_ints["income"].dtype == np.float64
    assert with_ints["age"].tolist() == frame["age"].astype("int64").astype(float).tolist()
    texts = frame.astype({"income": object})
    texts.loc[7, "income"] = "a lot"
    with pytest.raises(FeatureError, match="'income' must be a number"):
        features_frame(texts, classifier.card)
