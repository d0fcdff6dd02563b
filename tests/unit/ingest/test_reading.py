"""Decoding arrived files with Arrow gives the frame pandas gave; files too large are refused first."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from services.ingest.reading import DatasetReadError, DatasetTooLargeError, check_fits, decode
from services.ingest.validation import read_dataset
from shared.profile import as_categories
from tests.synthetic import synthetic_csv

SAME_AS_PANDAS = {
    "numbers and text": b"a,b,c\n1,x,1.5\n2,y,\n3,,2.5\n",
    "missing spellings": b"a,b\nNA,1\nnull,2\nNone,3\n#N/A,4\nn/a,5\n",
    "integers with a gap": b"a,b\n1,\n2,3\n",
    "booleans": b"a,b\nTrue,1\nFalse,0\n",
    "zeros and ones stay integers": b"a,b\n0,1\n1,0\n",
    "dates stay text": b"d,t,x\n2026-01-01,12:00:00,1\n2026-01-02,13:30:00,2\n",
    "timestamps stay text": b"d,x\n2026-01-01T10:00:00,1\n2026-01-02T11:00:00,2\n",
    "a column with no value": b'a,b\n"x",""\nz,NA\n',
    "duplicate names": b"a,a\n1,2\n",
    "an empty name": b"a,,c\n1,2,3\n",
    "a short row": b"a,b\n1,2\n3\n",
    "quotes and unicode": 'a,b\n"x, y",çé\nz,日本\n'.encode(),
    "windows line ends and a BOM": b"\xef\xbb\xbfa,b\r\n1,2\r\n",
}


@pytest.mark.parametrize("data", SAME_AS_PANDAS.values(), ids=SAME_AS_PANDAS.keys())
def test_csv_decodes_as_pandas_reads_it(data: bytes) -> None:
    pd.testing.assert_frame_equal(decode(lambda: data, fmt="csv"), pd.read_csv(io.BytesIO(data)))


def test_a_type_that_changes_after_the_first_block_is_read_as_text() -> None:
    data = b"a,b\n" + b"1,2\n" * 700_000 + b"x,3\n"  # past the typed first MiB and Arrow's first block
    frame = decode(lambda: data, fmt="csv")
    assert len(frame) == 700_001 and frame["a"].iloc[-1] == "x"


@pytest.mark.parametrize(
    "late",
    [b"2.5,3\n", b"7,2026-01-01\n"],
    ids=["decimals after integers", "dates after empty cells"],
)
def test_values_after_the_first_block_that_change_a_type_decode_as_pandas_reads_them(late: bytes) -> None:
    data = b"a,b\n" + b"1,\n" * 4_500_000 + late  # beyond Arrow's first 2 MiB block
    pd.testing.assert_frame_equal(decode(lambda: data, fmt="csv"), pd.read_csv(io.BytesIO(data)))


def test_quoted_line_breaks_across_the_type_probe_decode_as_pandas_reads_them() -> None:
    # Types are inferred from the first MiB cut at its last line break, which here falls inside
    # a quoted field: the probe reads a broken row, and the file must still read as pandas reads it.
    data = b"n,note,x\n" + b"".join(b'%d,"one\n%s",%d.5\n' % (i, b"two" * 60, i) for i in range(20_000))
    probe = data[: 1024 * 1024]
    assert probe[: probe.rfind(b"\n")].count(b'"') % 2 == 1  # the cut is inside a quoted field
    pd.testing.assert_frame_equal(decode(lambda: data, fmt="csv"), pd.read_csv(io.BytesIO(data)))


def test_the_synthetic_data_decodes_as_pandas_reads_it() -> None:
    data = synthetic_csv(20_000, seed=1)
    pd.testing.assert_frame_equal(decode(lambda: data, fmt="csv"), pd.read_csv(io.BytesIO(data)))


def test_parquet_decodes_from_a_stream() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    pd.testing.assert_frame_equal(read_dataset(lambda: io.BytesIO(buffer.getvalue()), fmt="parquet"), frame)


def test_unparseable_bytes_are_a_read_error() -> None:
    with pytest.raises(DatasetReadError, match="cannot be parsed"):
        read_dataset(b"PAR1 not really", fmt="parquet")


def test_a_csv_over_the_memory_setting_is_refused_with_the_figures() -> None:
    expected = r"needs about 60 MiB.*16 MiB \(CONVEYOR_INGEST_MAX_MEMORY_MB\)"
    with pytest.raises(DatasetTooLargeError, match=expected):
        check_fits(lambda: io.BytesIO(), size=20 * 1024**2, fmt="csv", max_memory_mb=16)
    check_fits(lambda: io.BytesIO(), size=5 * 1024**2, fmt="csv", max_memory_mb=16)


def test_a_parquet_file_is_measured_by_its_decoded_size() -> None:
    frame = pd.DataFrame({"a": [0.0] * 2_000_000})  # compresses to almost nothing, decodes to 16 MB
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    size = len(buffer.getvalue())
    assert size < 1024**2
    with pytest.raises(DatasetTooLargeError):
        check_fits(lambda: io.BytesIO(buffer.getvalue()), size=size, fmt="parquet", max_memory_mb=32)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([1, 2, 1, None], dtype="float64"),
        pd.Series([1, 2, 1, 3]),
        pd.Series(["a", "b", None, "a"], dtype="str"),
        pd.Series([True, False, True]),
        pd.Series([1, "1", 1.0, True, None], dtype=object),
    ],
    ids=["floats", "integers", "text", "booleans", "mixed objects"],
)
def test_categories_keyed_per_distinct_value_equal_those_keyed_per_row(values: pd.Series) -> None:
    from shared.profile import _category_key

    per_row = values.astype(object).map(_category_key).astype(object)
    pd.testing.assert_series_equal(as_categories(values), per_row)
