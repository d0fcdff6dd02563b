"""What the routes do, over an in-process model: shapes, refusals, and the request body parser."""

from __future__ import annotations

from uuid import uuid4

import pytest
from bentoml.exceptions import BadInput, NotFound
from pydantic import ValidationError

from services.deploy.serving.endpoint import LoadedModel, answer, join_feedback
from services.deploy.serving.io import RowsInput
from services.deploy.serving.metrics import serving_metrics
from services.deploy.serving.monitor import Monitor
from services.deploy.settings import DeploySettings
from tests.unit.deploy.conftest import Fitted

ROW = {"age": 30, "income": 40_000, "plan": "pro"}


def _monitor(fitted: Fitted) -> Monitor:
    settings = DeploySettings(capture_queue_size=5, feedback_window=100)
    return Monitor(card=fitted.card, settings=settings, correlation_id=uuid4(), metrics=serving_metrics())


def test_one_row_or_a_list_gets_one_prediction_per_row(classifier: Fitted) -> None:
    loaded = LoadedModel(model=classifier.model, card=classifier.card)
    one = answer(loaded, ROW)
    many = answer(loaded, [ROW, {**ROW, "age": 70}])
    assert (one.pipeline, one.version, len(one.predictions)) == ("churn", 3, 1)
    assert (
        len(many.predictions) == 2 and many.predictions[0].prediction_id != many.predictions[1].prediction_id
    )
    assert set(one.predictions[0].probabilities or {}) == {"no", "yes"}


def test_bad_rows_are_a_400(classifier: Fitted) -> None:
    loaded = LoadedModel(model=classifier.model, card=classifier.card)
    with pytest.raises(BadInput, match="missing features"):
        answer(loaded, {"age": 30, "plan": "pro"})
    assert (
        answer(loaded, {**ROW, "height": 1}).predictions[0].prediction
        == answer(loaded, ROW).predictions[0].prediction
    )


def test_served_predictions_are_captured_and_can_be_joined(classifier: Fitted) -> None:
    loaded = LoadedModel(model=classifier.model, card=classifier.card)
    monitor = _monitor(classifier)
    response = answer(loaded, [ROW] * 7, monitor=monitor)
    figures = monitor.performance()
    assert (figures["captured"], figures["capture_dropped"]) == (5, 2)  # a queue of 5: two dropped
    first = response.predictions[0]
    joined = join_feedback(monitor, first.prediction_id, first.prediction)
    assert joined.correct is True
    with pytest.raises(NotFound):
        join_feedback(monitor, "never-served", "yes")


def test_the_body_is_the_row_or_the_rows() -> None:
    assert RowsInput.model_validate_json(b'{"age": 1}').root == {"age": 1}
    assert RowsInput.model_validate_json(b'[{"age": 1}, {"age": null}]').root == [{"age": 1}, {"age": None}]
    with pytest.raises(BadInput, match="not valid JSON"):
        RowsInput.model_validate_json(b"{nope")
    with pytest.raises(ValidationError):
        RowsInput.model_validate_json(b"[]")
    with pytest.raises(ValidationError):
        RowsInput.model_validate_json(b'{"age": [1, 2]}')
