"""Decoding an arrived file into a frame: Arrow's multi-threaded readers, pandas' meaning.

``pandas.read_csv`` parses on one thread and needs the whole file in memory first; Arrow's CSV
reader parses blocks on every core straight from a stream (a ranged-GET reader over MinIO), so
the raw text is never held whole. The options below give the frame pandas would have given:
the same missing-value spellings, empty strings as missing, ``True``/``False`` as booleans and
dates left as text. Column types come from the file's first MiB and are fixed for the read, so
each block is converted once and dropped; should a later row disagree, Arrow reads the file again
inferring every block. Anything Arrow refuses or reads differently (duplicate or empty column
names, ragged rows) is read again by pandas, as before.

Memory is decided before decoding: a file whose frame would not fit in ``max_memory_mb`` is
refused with the figures, instead of the service being killed half-way.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import BinaryIO, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

Format = Literal["csv", "parquet"]
Source = bytes | BinaryIO

# pandas' default missing-value spellings (pandas._libs.parsers.STR_NA_VALUES).
NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
# Blocks of 2 MiB, one ranged GET each, parsed in parallel: as fast as 8 MiB blocks from MinIO
# (0.97-1.16 s against 1.06-1.16 s at 2M rows), and the blocks in flight take less memory (the
# first decode in a process peaked 34-37 MiB above its start at 100k rows against 45-48 MiB).
_READ = pa_csv.ReadOptions(block_size=2 * 1024 * 1024)
# Column types are inferred from the file's first MiB, then fixed for the whole read.
_PROBE_BYTES = 1024 * 1024
_TEXTUAL = (pa.types.is_temporal, pa.types.is_binary, pa.types.is_large_binary)
# Peak memory while decoding, per byte of the decoded frame (Arrow table, pandas frame, the
# checks' temporaries and the split), measured with the bench's synthetic data; see BENCHMARKS.md.
PEAK_PER_DECODED_BYTE = 3.0
# A CSV's decoded size is at most about its text: numbers shrink to 8 bytes, strings stay.
DECODED_PER_CSV_BYTE = 1.0


class DatasetReadError(ValueError):
    """The bytes are not a readable dataset with at least one data row."""


class DatasetTooLargeError(DatasetReadError):
    """Decoding the file would take more memory than the service may use."""


def check_fits(source: Callable[[], BinaryIO], *, size: int, fmt: Format, max_memory_mb: int) -> None:
    """Raise DatasetTooLargeError when decoding the file would need more than ``max_memory_mb``."""
    decoded = size * DECODED_PER_CSV_BYTE if fmt == "csv" else _parquet_decoded_size(source(), size=size)
    needed = decoded * PEAK_PER_DECODED_BYTE
    if needed > max_memory_mb * 1024**2:
        raise DatasetTooLargeError(
            f"the {fmt} file ({size / 1024**2:.0f} MiB) needs about {needed / 1024**2:.0f} MiB to validate, "
            f"more than this ingest service's {max_memory_mb} MiB (CONVEYOR_INGEST_MAX_MEMORY_MB); "
            "split it into smaller files or raise the setting"
        )


def decode(source: Callable[[], Source], *, fmt: Format) -> pd.DataFrame:
    """The frame in the file that ``source()`` opens (called again for pandas' second reading)."""
    try:
        if fmt == "parquet":
            frame = pq.read_table(_file(source())).to_pandas(split_blocks=True, self_destruct=True)
        else:
            frame = _csv(source)
    except pd.errors.EmptyDataError as error:
        raise DatasetReadError(f"the {fmt} file has no columns: {str(error)[:500]}") from None
    except (ValueError, OSError, pa.ArrowException, pd.errors.ParserError) as error:
        raise DatasetReadError(f"the {fmt} file cannot be parsed: {str(error)[:500]}") from None
    # Arrow's allocator keeps what the decoded table (now the frame's) no longer needs; give it
    # back, or the process holds the file's decoding beside everything that follows.
    pa.default_memory_pool().release_unused()
    return frame


def _csv(source: Callable[[], Source]) -> pd.DataFrame:
    try:
        table = _arrow_csv(source)
    except (pa.ArrowInvalid, _PandasReads):
        return pd.read_csv(_file(source()))
    return table.to_pandas(split_blocks=True, self_destruct=True)


class _PandasReads(Exception):
    """Arrow read the file, but not as pandas would: pandas reads it."""


def _arrow_csv(source: Callable[[], Source]) -> pa.Table:
    first = _first_rows_schema(_file(source()))
    text: dict[str, pa.DataType] = {}
    table: pa.Table | None = None
    if first is not None:
        _check_names(first.names)
        # pandas leaves dates and times as text.
        text = dict.fromkeys(_textual(first), pa.string())
        # Every column the first rows typed keeps that type: Arrow converts each block once and
        # drops it. Left to infer, it keeps every parsed block to the end, in case a later one
        # changes a column's type: about the file's size again, and twice the conversions.
        typed = {f.name: f.type for f in first if not pa.types.is_null(f.type)}
        with contextlib.suppress(pa.ArrowInvalid):
            table = _read_csv(_file(source()), {**typed, **text})
    if table is None:
        # Later rows disagree with the first (integers, then decimals), or the first rows do not
        # parse alone (a quoted line break at the cut): Arrow infers every block.
        table = _read_csv(_file(source()), text)
        _check_names(table.column_names)
    if late := _textual(table.schema):
        # Dates in a column the first rows left empty.
        table = _read_csv(_file(source()), {**text, **dict.fromkeys(late, pa.string())})
        if _textual(table.schema):
            raise _PandasReads("columns Arrow cannot keep as text")
    # A column with no value at all is float64 in pandas (all NaN), not Arrow's null type.
    empty = [i for i, f in enumerate(table.schema) if pa.types.is_null(f.type)]
    for i in empty:
        table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.float64()))
    return table


def _check_names(names: list[str]) -> None:
    if len(set(names)) != len(names) or "" in names:
        raise _PandasReads("duplicate or empty column names")


def _first_rows_schema(file: BinaryIO) -> pa.Schema | None:
    """The column types Arrow infers from the file's first MiB (its last, partial line left out)."""
    head = file.read(_PROBE_BYTES)
    if len(head) == _PROBE_BYTES:
        head = head[: head.rfind(b"\n") + 1] or head
    options = pa_csv.ReadOptions(use_threads=False)
    try:
        return pa_csv.open_csv(
            pa.BufferReader(head), read_options=options, convert_options=_convert({})
        ).schema
    except pa.ArrowInvalid:
        return None


def _read_csv(file: BinaryIO, types: dict[str, pa.DataType]) -> pa.Table:
    return pa_csv.read_csv(file, read_options=_READ, convert_options=_convert(types))


def _convert(types: dict[str, pa.DataType]) -> pa_csv.ConvertOptions:
    return pa_csv.ConvertOptions(
        null_values=list(NA_VALUES),
        strings_can_be_null=True,
        true_values=["True", "TRUE", "true"],
        false_values=["False", "FALSE", "false"],
        column_types=types,
    )


def _textual(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if any(check(f.type) for check in _TEXTUAL)]


def _parquet_decoded_size(file: BinaryIO, *, size: int) -> float:
    try:
        metadata = pq.ParquetFile(file).metadata
    except (pa.ArrowException, OSError):
        return float(size)  # unreadable: decode() will say why
    stored = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    # Dictionary and run-length encodings shrink repeated values below their decoded 8 bytes.
    return float(max(stored, metadata.num_rows * metadata.num_columns * 8))


def _file(source: Source) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source
