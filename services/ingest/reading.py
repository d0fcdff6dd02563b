"""Decoding an arrived file into a frame: Arrow's multi-threaded readers, pandas' meaning.

``pandas.read_csv`` parses on one thread and needs the whole file in memory first; Arrow's CSV
reader parses blocks on every core straight from a stream (a ranged-GET reader over MinIO), so
the raw text is never held whole. The options below give the frame pandas would have given:
the same missing-value spellings, empty strings as missing, ``True``/``False`` as booleans and
dates left as text. Anything Arrow refuses or reads differently (duplicate or empty column names,
a type that changes after the first block, ragged rows) is read again by pandas, as before.

Memory is decided before decoding: a file whose frame would not fit in ``max_memory_mb`` is
refused with the figures, instead of the service being killed half-way.
"""

from __future__ import annotations

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
# Blocks of 8 MiB: one ranged GET each, parsed in parallel; types are inferred from the first.
_READ = pa_csv.ReadOptions(block_size=8 * 1024 * 1024)
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
        table = _arrow_csv(_file(source()))
    except (pa.ArrowInvalid, _PandasReads):
        return pd.read_csv(_file(source()))
    return table.to_pandas(split_blocks=True, self_destruct=True)


class _PandasReads(Exception):
    """Arrow read the file, but not as pandas would: pandas reads it."""


def _arrow_csv(file: BinaryIO, *, as_text: tuple[str, ...] = ()) -> pa.Table:
    convert = pa_csv.ConvertOptions(
        null_values=list(NA_VALUES),
        strings_can_be_null=True,
        true_values=["True", "TRUE", "true"],
        false_values=["False", "FALSE", "false"],
        column_types=dict.fromkeys(as_text, pa.string()),
    )
    table = pa_csv.read_csv(file, read_options=_READ, convert_options=convert)
    names = table.column_names
    if len(set(names)) != len(names) or "" in names:
        raise _PandasReads("duplicate or empty column names")
    textual = tuple(f.name for f in table.schema if any(check(f.type) for check in _TEXTUAL))
    if textual and not as_text:
        # pandas leaves dates and times as text; so does the second reading.
        file.seek(0)
        return _arrow_csv(file, as_text=textual)
    if textual:
        raise _PandasReads("columns Arrow cannot keep as text")
    # A column with no value at all is float64 in pandas (all NaN), not Arrow's null type.
    empty = [i for i, f in enumerate(table.schema) if pa.types.is_null(f.type)]
    for i in empty:
        table = table.set_column(i, table.field(i).name, table.column(i).cast(pa.float64()))
    return table


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
