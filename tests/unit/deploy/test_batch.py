"""Batch tables: CSV or Parquet in, the input's key columns with the predictions out."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from services.deploy.batch import BatchRefused, prediction_table, read_table
from services.deploy.serving.predict import features_frame, predict_frame
from tests.unit.deploy.conftest import Fitted


def test_csv_and_parquet_are_read_by_extension(classifier: Fitted) -> None:
    frame = classifier.frame.head(5)
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    from_csv = read_table(frame.to_csv(index=False).encode(), key="in/part.CSV")
    from_parquet = read_table(parquet.getvalue(), key="in/part.parquet")
    pd.testing.assert_frame_equal(from_parquet, frame.reset_index(drop=True))
    assert from_csv["plan"].tolist() == frame["plan"].tolist()
    with pytest.raises(BatchRefused):
        read_table(b"{}", key="in/part.json")


def test_the_table_keeps_key_columns_next_to_the_predictions(classifier: Fitted) -> None:
    frame = classifier.frame.head(6).assign(customer="c", prediction="theirs")
    frame.index = range(10, 16)  # an index that is not 0..n-1 must not misalign anything
    predicted = predict_frame(classifier.model, features_frame(frame, classifier.card), classifier.card)
    table = prediction_table(frame, predicted, classifier.card)
    assert list(table.columns) == [
        "row", "customer", "input_prediction", "prediction", "probability_no", "probability_yes"
    ]  # fmt: skip
    assert table["row"].tolist() == list(range(6))
    assert table["prediction"].tolist() == classifier.model.predict(frame).tolist()
    assert table["input_prediction"].tolist() == ["theirs"] * 6
    assert (table["probability_no"] + table["probability_yes"]).round(9).eq(1).all()


def test_regression_tables_have_no_probabilities(regressor: Fitted) -> None:
    frame = regressor.frame.head(3)
    predicted = predict_frame(regressor.model, frame, regressor.card)
    assert list(prediction_table(frame, predicted, regressor.card).columns) == ["row", "prediction"]
