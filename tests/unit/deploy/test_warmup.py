"""Warm-up: a version answers rows of its own test split as recorded at import, or it is refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from services.deploy.serving.endpoint import LoadedModel, prediction_id, request_inputs, worker_of
from services.deploy.serving.predict import predict_frame
from services.deploy.serving.warmup import WarmupFailed, check, sample
from tests.unit.deploy.conftest import Fitted


def test_the_recorded_rows_come_back_with_the_same_answers(classifier: Fitted) -> None:
    frame = classifier.frame.assign(target="yes", row_id=1)  # a split holds more than the features
    warmup = sample(classifier.model, classifier.card, frame, rows=20)
    assert len(warmup.rows) == 20 and set(warmup.rows[0]) == {"age", "income", "plan"}
    assert all(type(row["age"]) is float and type(row["plan"]) is str for row in warmup.rows)  # JSON types
    loaded = LoadedModel(model=classifier.model, card=classifier.card)
    check(warmup, loaded.runtime.predict(request_inputs(loaded, warmup.rows)))


def test_a_model_that_answers_otherwise_is_refused(classifier: Fitted) -> None:
    warmup = sample(classifier.model, classifier.card, classifier.frame, rows=20)
    other = clone(classifier.model).set_params(estimator=LogisticRegression(C=1e-4))
    other.fit(classifier.frame, np.where(classifier.frame["income"] > 50_000, "yes", "no"))
    loaded = LoadedModel(other, classifier.card)
    answers = loaded.runtime.predict(request_inputs(loaded, warmup.rows))
    with pytest.raises(WarmupFailed, match="differ"):
        check(warmup, answers)


def test_probabilities_must_agree_too(classifier: Fitted) -> None:
    warmup = sample(classifier.model, classifier.card, classifier.frame, rows=5)
    answers = predict_frame(classifier.model, classifier.frame.head(5), classifier.card)
    assert answers.probabilities is not None
    nudged = type(answers)(labels=answers.labels, probabilities=answers.probabilities + 1e-3)
    with pytest.raises(WarmupFailed, match="probabilities differ"):
        check(warmup, nudged)


def test_a_prediction_id_names_the_worker_that_remembers_it() -> None:
    assert worker_of(prediction_id(3)) == 3
    assert prediction_id(1) != prediction_id(1)
    for foreign in ("no-such-prediction", "0f3a", "w-12", "wx-1", ""):
        assert worker_of(foreign) is None
