"""Ground truth joined to remembered predictions: live accuracy and MAE."""

from __future__ import annotations

import pytest

from services.deploy.serving.feedback import FeedbackBook, FeedbackError, UnknownPrediction, same_label


def test_classification_feedback_gives_live_accuracy() -> None:
    book = FeedbackBook(size=10, task="classification", version=4)
    labels: list[str | int] = ["yes", "no", "yes", 1]
    for i, label in enumerate(labels):
        book.remember(f"p{i}", label)
    results = [book.join("p0", "yes"), book.join("p1", "yes"), book.join("p2", "yes"), book.join("p3", "1")]
    assert [r.correct for r in results] == [True, False, True, True]
    assert book.performance() == {
        "version": 4,
        "task": "classification",
        "feedback": 4,
        "unknown": 0,
        "accuracy": 0.75,
    }


def test_regression_feedback_gives_live_mae() -> None:
    book = FeedbackBook(size=10, task="regression", version=1)
    book.remember("a", 10.0)
    book.remember("b", 4)
    assert book.join("a", 12).absolute_error == 2.0
    assert book.join("b", 3.0).absolute_error == 1.0
    assert book.performance()["mae"] == 1.5
    book.remember("c", 1.0)
    with pytest.raises(FeedbackError):
        book.join("c", "many")


def test_unknown_expired_or_already_joined_predictions_are_refused() -> None:
    book = FeedbackBook(size=2, task="classification", version=1)
    for i in range(3):
        book.remember(f"p{i}", "yes")
    with pytest.raises(UnknownPrediction):
        book.join("p0", "yes")  # forgotten: the window holds two
    book.join("p2", "yes")
    with pytest.raises(UnknownPrediction):
        book.join("p2", "yes")  # joined once only
    assert book.performance()["unknown"] == 2


@pytest.mark.parametrize(
    ("prediction", "actual", "same"),
    [
        (1, "1", True),
        (1, 1.0, True),
        ("yes", "yes", True),
        (True, "True", True),
        ("yes", "no", False),
        (0, 1, False),
    ],
)
def test_labels_compare_across_json_spellings(prediction: object, actual: object, same: bool) -> None:
    assert same_label(prediction, actual) is same  # type: ignore[arg-type]
