"""Batch files as streams of Arrow record batches: CSV or Parquet in, a Parquet of predictions out.

A file is scored chunk by chunk, so that a large Parquet file is never held whole (only the row
group being read) and the next chunk is read and decoded in a thread while this one is scored.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, TypeVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from services.deploy.serving.predict import ModelCard, Predictions
from services.deploy.serving.runtime import Inputs, Runtime, SklearnRuntime

CHUNK_ROWS = 131_072
ROW_COLUMN = "row"
PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"
# Reads of a CSV (which its parser asks for in small pieces) are gathered into requests this large.
CSV_READ_BYTES = 8 * 1024 * 1024

T = TypeVar("T")


class BatchRefused(ValueError):
    """An input that cannot be scored (an unknown format, say)."""


def input_batches(
    source: io.RawIOBase, *, key: str, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pa.RecordBatch]:
    """The rows of a CSV or Parquet file (by ``key``'s extension), a chunk at a time; at least one."""
    if key.lower().endswith(".parquet"):
        return _parquet_batches(source, chunk_rows=chunk_rows)
    if key.lower().endswith(".csv"):
        return _csv_batches(source, chunk_rows=chunk_rows)
    raise BatchRefused(f"{key!r} is neither .csv nor .parquet")


def score_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    model: Any = None,
    card: ModelCard,
    sink: pa.NativeFile | IO[bytes],
    runtime: Runtime | None = None,
    first_row: int = 0,
) -> int:
    """Predict every row of ``batches``, writing the predictions to ``sink`` as Parquet; the rows scored.

    Through the version's ``runtime`` (the endpoint's prediction function), or scikit-learn over ``model``;
    rows are numbered from ``first_row`` (a Spark part's place in the file).
    """
    runtime = runtime or SklearnRuntime(model, card)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch, inputs in prefetched(_with_inputs(batches, runtime)):
            predicted = runtime.predict(inputs)
            table = prediction_batch(batch, predicted, card, first_row=first_row + rows)
            # Dictionary encoding only for the label, whose values repeat by design: tried on row
            # numbers, ids and probabilities it costs more than scoring a linear model's chunk.
            writer = writer or pq.ParquetWriter(sink, table.schema, use_dictionary=[PREDICTION_COLUMN])
            writer.write_batch(table)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def prediction_batch(
    batch: pa.RecordBatch, predicted: Predictions, card: ModelCard, *, first_row: int
) -> pa.RecordBatch:
    """The row numbers, the input's key (non-feature) columns, and the predictions next to them."""
    produced = {ROW_COLUMN, PREDICTION_COLUMN, *(f"{PROBABILITY_PREFIX}{c}" for c in card.classes)}
    names = [ROW_COLUMN]
    columns: list[pa.Array] = [pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))]
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name not in card.features:
            names.append(f"input_{name}" if name in produced else name)
            columns.append(column)
    names.append(PREDICTION_COLUMN)
    columns.append(pa.array(predicted.labels, type=_label_type(card)))
    if predicted.probabilities is not None:
        # An empty chunk's probabilities come back without a column per class.
        probabilities = predicted.probabilities.reshape(batch.num_rows, len(card.classes))
        for index, label in enumerate(card.classes):
            names.append(f"{PROBABILITY_PREFIX}{label}")
            columns.append(pa.array(probabilities[:, index]))
    return pa.RecordBatch.from_arrays(columns, names=names)


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """The items of ``items``, the next one produced in a thread while the caller works on this one."""
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-read") as reader:
        upcoming = reader.submit(next, items, done)
        while (item := upcoming.result()) is not done:
            upcoming = reader.submit(next, items, done)
            yield cast(T, item)


def _parquet_batches(source: io.RawIOBase, *, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    # pre_buffer (the default, stated because every read is a GET): a row group's column chunks
    # are fetched as a few coalesced ranges of up to 32 MB, not one request per column.
    parquet = pq.ParquetFile(source, pre_buffer=True)
    if parquet.metadata.num_rows == 0:
        yield _empty(parquet.schema_arrow)
        return
    yield from parquet.iter_batches(batch_size=chunk_rows)


def _csv_batches(source: io.RawIOBase, *, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    # pandas reads the whole file, as it always has, so that a column's type is inferred from all
    # of its values (a streaming CSV reader infers it from the first block and fails on the rest).
    frame = pd.read_csv(io.BufferedReader(source, CSV_READ_BYTES))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    del frame
    if table.num_rows == 0:
        yield _empty(table.schema)
        return
    yield from table.to_batches(max_chunksize=chunk_rows)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    # One empty chunk, so that an empty input still gets an output file with the right columns.
    return pa.RecordBatch.from_pylist([], schema=schema)


def _with_inputs(
    batches: Iterator[pa.RecordBatch], runtime: Runtime
) -> Iterator[tuple[pa.RecordBatch, Inputs]]:
    # Done here, in the reading thread, since it is a copy of every value that the scoring thread
    # need not wait for.
    for batch in batches:
        yield batch, runtime.inputs_of_batch(batch)


def _label_type(card: ModelCard) -> pa.DataType | None:
    # Stated rather than inferred, so that every chunk (an empty one too) has the same schema.
    if card.task == "regression":
        return pa.float64()
    return pa.array(list(card.classes)).type if card.classes else None
