"""Batch files: CSV or Parquet in, chunk by chunk; the input's key columns with the predictions out."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.deploy.batch_io import BatchRefused, input_batches, prediction_batch, score_batches
from services.deploy.serving.predict import FeatureError, predict_frame
from shared.object_reader import ObjectReader
from tests.unit.deploy.conftest import Fitted


def _reader(data: bytes) -> ObjectReader:
    """The reader the store hands out, over bytes in memory instead of ranged GETs."""
    return ObjectReader(lambda offset, length: data[offset : offset + length], size=len(data))


def _parquet(frame: pd.DataFrame, *, row_group_size: int | None = None) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=row_group_size)
    return buffer.getvalue()


def _score(fitted: Fitted, data: bytes, *, key: str, chunk_rows: int = 1000) -> pd.DataFrame:
    sink = io.BytesIO()
    batches = input_batches(_reader(data), key=key, chunk_rows=chunk_rows)
    rows = score_batches(batches, model=fitted.model, card=fitted.card, sink=sink)
    output = pd.read_parquet(io.BytesIO(sink.getvalue()))
    assert rows == len(output)
    return output


def test_the_reader_seeks_and_reads_ranges_like_a_file() -> None:
    reader = _reader(b"0123456789")
    assert reader.read(3) == b"012"
    assert reader.seek(-2, io.SEEK_END) == 8 and reader.read() == b"89" and reader.read(5) == b""
    reader.seek(0)
    assert io.BufferedReader(reader, 4).read() == b"0123456789"


def test_csv_and_parquet_are_read_by_extension_in_chunks(classifier: Fitted) -> None:
    frame = classifier.frame.head(25)
    from_parquet = list(input_batches(_reader(_parquet(frame)), key="in/part.parquet", chunk_rows=10))
    from_csv = list(
        input_batches(_reader(frame.to_csv(index=False).encode()), key="in/part.CSV", chunk_rows=10)
    )
    assert [b.num_rows for b in from_parquet] == [b.num_rows for b in from_csv] == [10, 10, 5]
    pd.testing.assert_frame_equal(pa.Table.from_batches(from_parquet).to_pandas(), frame)
    assert pa.Table.from_batches(from_csv).column("plan").to_pylist() == frame["plan"].tolist()
    with pytest.raises(BatchRefused, match=r"neither \.csv nor \.parquet"):
        input_batches(_reader(b"{}"), key="in/part.json")


def test_the_table_keeps_key_columns_next_to_the_predictions(classifier: Fitted) -> None:
    frame = classifier.frame.head(6).assign(customer="c", prediction="theirs")
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    predicted = predict_frame(classifier.model, frame, classifier.card)
    table = prediction_batch(batch, predicted, classifier.card, first_row=100).to_pandas()
    assert list(table.columns) == [
        "row", "customer", "input_prediction", "prediction", "probability_no", "probability_yes"
    ]  # fmt: skip
    assert table["row"].tolist() == list(range(100, 106))  # numbered across chunks
    assert table["prediction"].tolist() == classifier.model.predict(frame).tolist()
    assert table["input_prediction"].tolist() == ["theirs"] * 6
    assert (table["probability_no"] + table["probability_yes"]).round(9).eq(1).all()


def test_regression_tables_have_no_probabilities(regressor: Fitted) -> None:
    output = _score(regressor, _parquet(regressor.frame.head(3)), key="x.parquet")
    assert list(output.columns) == ["row", "prediction"]
    np.testing.assert_allclose(output["prediction"], regressor.model.predict(regressor.frame.head(3)))


def test_scoring_chunk_by_chunk_equals_scoring_the_whole_file_at_once(classifier: Fitted) -> None:
    frame = classifier.frame.assign(customer_id=[f"c-{i}" for i in range(len(classifier.frame))])
    one_shot = predict_frame(classifier.model, frame, classifier.card)
    expected = pd.DataFrame(
        {
            "row": np.arange(len(frame)),
            "customer_id": frame["customer_id"],
            "prediction": one_shot.labels,
            "probability_no": np.asarray(one_shot.probabilities)[:, 0],
            "probability_yes": np.asarray(one_shot.probabilities)[:, 1],
        }
    )
    # Row groups of 30 read in chunks of 45: chunks that straddle row groups, and a short last one.
    many_groups = _parquet(frame, row_group_size=30)
    assert pq.ParquetFile(io.BytesIO(many_groups)).num_row_groups == 7
    for output in (
        _score(classifier, many_groups, key="in.parquet", chunk_rows=45),
        _score(classifier, _parquet(frame), key="in.parquet", chunk_rows=len(frame)),
        _score(classifier, frame.to_csv(index=False).encode(), key="in.csv", chunk_rows=45),
    ):
        pd.testing.assert_frame_equal(output, expected, check_dtype=False, check_exact=False)


def test_integers_and_narrow_floats_are_scored_as_floats(classifier: Fitted) -> None:
    frame = classifier.frame.head(8).astype({"income": "float32"})
    frame["age"] = frame["age"].round().astype("int64")
    output = _score(classifier, _parquet(frame), key="in.parquet", chunk_rows=3)
    assert output["prediction"].tolist() == classifier.model.predict(frame.astype({"age": float})).tolist()


def test_an_empty_file_gets_an_empty_output_with_the_same_columns(classifier: Fitted) -> None:
    frame = classifier.frame.head(0).assign(customer_id=pd.Series([], dtype="int64"))
    for data, key in ((_parquet(frame), "in.parquet"), (frame.to_csv(index=False).encode(), "in.csv")):
        output = _score(classifier, data, key=key)
        assert len(output) == 0
        assert list(output.columns) == [
            "row",
            "customer_id",
            "prediction",
            "probability_no",
            "probability_yes",
        ]


@pytest.mark.parametrize("key", ["in.parquet", "in.csv"])
def test_a_file_without_a_feature_is_refused(classifier: Fitted, key: str) -> None:
    frame = classifier.frame.head(5).drop(columns=["income"])
    data = _parquet(frame) if key.endswith(".parquet") else frame.to_csv(index=False).encode()
    with pytest.raises(FeatureError, match=r"lacks the model's features \['income'\]"):
        _score(classifier, data, key=key)


@pytest.mark.parametrize("key", ["in.parquet", "in.csv"])
def test_a_value_that_is_not_a_number_is_refused(classifier: Fitted, key: str) -> None:
    frame = classifier.frame.head(50).astype({"age": str})  # a text column, as the file has it
    frame.loc[42, "age"] = "forty"
    data = (
        _parquet(frame, row_group_size=10) if key.endswith(".parquet") else frame.to_csv(index=False).encode()
    )
    with pytest.raises(FeatureError, match="'age' must be a number"):
        _score(classifier, data, key=key, chunk_rows=10)


def test_bytes_that_are_no_parquet_are_refused_as_a_value_error(classifier: Fitted) -> None:
    with pytest.raises(ValueError, match="Parquet"):
        _score(classifier, b"name,age\nann,3\n", key="in.parquet")
