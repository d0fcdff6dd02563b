"""Derived-column expressions: every function, typing, positions of errors and hostile text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.features.expressions import MAX_DEPTH, ExpressionError, Kind, evaluate, parse
from shared.features.functions import SIGNATURES

COLUMNS: dict[str, Kind] = {"x": "number", "y": "number", "city": "text", "when": "text"}
FRAME = pd.DataFrame(
    {
        "x": [4.0, -1.0, 0.0, np.nan],
        "y": [2.0, 3.0, 0.0, 1.0],
        "city": ["Paris", "Lyon", None, "Paris"],
        "when": ["2024-03-15 10:30:00", "2023-12-31", "not a date", None],
    }
)


def values(text: str, frame: pd.DataFrame = FRAME) -> list[object]:
    result = evaluate(parse(text, COLUMNS), frame).tolist()
    return ["nan" if isinstance(v, float) and math.isnan(v) else v for v in result]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x + y", [6.0, 2.0, 0.0, "nan"]),
        ("x - y * 2", [0.0, -7.0, 0.0, "nan"]),
        ("x / y", [2.0, -1 / 3, "nan", "nan"]),  # 0 / 0 is missing, not an error
        ("x // y", [2.0, -1.0, "nan", "nan"]),
        ("x % y", [0.0, 2.0, "nan", "nan"]),
        ("y ** 2", [4.0, 9.0, 0.0, 1.0]),
        ("x ** -1", [0.25, -1.0, "nan", "nan"]),  # 1 / 0 is infinite, so missing
        ("-x", [-4.0, 1.0, -0.0, "nan"]),
        ("abs(x)", [4.0, 1.0, 0.0, "nan"]),
        ("sqrt(x)", [2.0, "nan", 0.0, "nan"]),
        ("log(y)", [math.log(2), math.log(3), "nan", 0.0]),
        ("log1p(y)", [math.log1p(2), math.log1p(3), 0.0, math.log1p(1)]),
        ("log10(y)", [math.log10(2), math.log10(3), "nan", 0.0]),
        ("exp(y)", [math.exp(2), math.exp(3), 1.0, math.e]),
        ("floor(x / 3)", [1.0, -1.0, 0.0, "nan"]),
        ("ceil(x / 3)", [2.0, -0.0, 0.0, "nan"]),
        ("round(x / 3)", [1.0, -0.0, 0.0, "nan"]),
        ("sign(x)", [1.0, -1.0, 0.0, "nan"]),
        ("clip(x, 0, 2)", [2.0, 0.0, 0.0, "nan"]),
        ("min(x, y)", [2.0, -1.0, 0.0, "nan"]),
        ("max(x, y, 3)", [4.0, 3.0, 3.0, "nan"]),
        ("where(x > y, x, y)", [4.0, 3.0, 0.0, 1.0]),
        ("x if x > 0 else 0", [4.0, 0.0, 0.0, 0.0]),
        ("where(city == 'Paris', 'capital', 'other')", ["capital", "other", "other", "capital"]),
        ("isnull(x)", [False, False, False, True]),
        ("isnull(city)", [False, False, True, False]),
        ("year(when)", [2024.0, 2023.0, "nan", "nan"]),
        ("month(when)", [3.0, 12.0, "nan", "nan"]),
        ("day(when)", [15.0, 31.0, "nan", "nan"]),
        ("hour(when)", [10.0, 0.0, "nan", "nan"]),
        ("weekday(when)", [4.0, 6.0, "nan", "nan"]),  # Friday, Sunday (Monday is 0)
        ("dayofyear(when)", [75.0, 365.0, "nan", "nan"]),
        ("days_between(when, '2024-03-16 10:30:00')", [1.0, 76 + 10.5 / 24, "nan", "nan"]),
        ("0 < x <= 4", [True, False, False, False]),
        ("x > 0 and city == 'Paris' or not y > 0", [True, False, True, False]),
        ("city != 'Paris'", [False, True, True, False]),
        ("col('x') * 2", [8.0, -2.0, 0.0, "nan"]),
    ],
)
def test_each_operation_is_vectorised_over_the_rows(text: str, expected: list[object]) -> None:
    assert values(text) == pytest.approx(expected) if "nan" not in expected else values(text) == expected


def test_every_function_is_exercised() -> None:
    names = {name for name in SIGNATURES}
    tested = {"abs", "sqrt", "log", "log1p", "log10", "exp", "floor", "ceil", "round", "sign", "clip"}
    tested |= {"min", "max", "where", "isnull", "year", "month", "day", "hour", "weekday", "dayofyear"}
    assert names == tested | {"days_between"}


def test_an_overflow_is_missing_not_infinite() -> None:
    frame = pd.DataFrame({"x": [1e308, 1.0], "y": [1e308, 1.0]})
    assert values("exp(x) + x * y", frame)[0] == "nan"


def test_text_columns_compare_as_categories_whatever_their_source_type() -> None:
    # A Parquet integer 1, a CSV "1" and a JSON 1.0 are the same category, as in the one-hot step.
    frame = pd.DataFrame({"x": [0.0] * 3, "y": [0.0] * 3, "city": [1, "1", 1.0], "when": [None] * 3})
    assert values("city == '1'", frame) == [True, True, True]


def test_a_constant_expression_fills_every_row() -> None:
    assert values("1 + 2") == [3.0, 3.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("x + z", "unknown column 'z'", 5),
        ("foo(x)", "unknown function 'foo'", 1),
        ("x +", "syntax error", 4),
        ("city / 2", "cannot apply / to text", 1),
        ("x / (city == 'a')", "cannot apply / to boolean", 6),
        ("sqrt(city)", "sqrt() needs number, not text", 6),
        ("year(x)", "year() needs text, not number", 6),
        ("where(x, 1, 2)", "a condition needs boolean, not number", 7),
        ("where(x > 1, 'a', 2)", "same kind", 1),
        ("x > 'a'", "cannot compare number with text", 1),
        ("city < 'b'", "text can only be compared with == or !=", 1),
        ("x in y", "comparison is not allowed", 1),
        ("not x", "'not' needs boolean", 5),
        ("x and y", "'and' / 'or' needs boolean", 1),
        ("clip(x, 1)", "clip() takes 3 arguments, not 2", 1),
        ("log(x, base=2)", "takes no keyword arguments", 8),
        ("col(x)", "col() takes one column name written in quotes", 1),
        ("x & y", "the operator", 1),
        ("'a' + 'b'", "cannot apply + to text", 1),
        ("None", "a NoneType constant is not allowed", 1),
        ("", "empty", 1),
    ],
)
def test_a_bad_expression_is_refused_with_its_position(text: str, message: str, column: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text, COLUMNS)
    assert message in caught.value.message
    assert caught.value.column == column
    assert f"(at column {column})" in str(caught.value)


def test_a_position_on_a_later_line_names_the_line() -> None:
    with pytest.raises(ExpressionError, match=r"unknown column 'nope' \(.*\) \(at line 2, column 5\)"):
        parse("(x +\n    nope)", COLUMNS)


def test_positions_count_characters_not_bytes() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("where(city == 'Zürich', 1, 2) + q", COLUMNS)
    assert caught.value.column == len("where(city == 'Zürich', 1, 2) + ") + 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "only functions named in the expression language"),
        ("__import__('os')", "unknown function '__import__'"),
        ("eval('1')", "unknown function 'eval'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("x.__class__.__bases__", "attribute access"),
        ("().__class__", "attribute access"),
        ("(lambda: 1)()", "only functions named"),
        ("[c for c in 'ab']", "'ListComp' is not allowed"),
        ("x[0]", "indexing"),
        ("f'{x}'", "an f-string"),
        ("(y := 1)", "assignment"),
        ("x ** 1000000", "the exponent 1e+06 is beyond"),
        ("x ** -100", "the exponent -100 is beyond"),
        ("9 ** 9 ** 9 ** 9", "an exponent must be a number written in the expression"),
        ("x ** y", "an exponent must be a number written in the expression"),
        ("1" * 400, "the number is too large"),
        ("-" * (MAX_DEPTH + 5) + "x", "nested more than"),
        ("(" * 1000 + "x" + ")" * 1000, "longer than"),
        ("(" * 250 + "x" + ")" * 250, "nested parentheses"),
        ("+".join(["x"] * 600), "longer than"),
        ("+".join(["x"] * 200), "parts, more than"),
        ("abs(" * 40 + "x" + ")" * 40, "nested more than"),
        ("b'x'", "a bytes constant is not allowed"),
        ("x\x00", "null bytes"),
    ],
)
def test_hostile_text_is_refused_before_anything_runs(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=r".") as caught:
        parse(text, COLUMNS)
    assert message in caught.value.message


def test_a_column_named_like_a_builtin_is_only_a_column() -> None:
    columns: dict[str, Kind] = {"open": "number", "__import__": "number"}
    frame = pd.DataFrame({"open": [1.0], "__import__": [2.0]})
    assert evaluate(parse("open + __import__", columns), frame).tolist() == [3.0]


def test_an_expression_reports_the_columns_it_reads() -> None:
    assert parse("where(city == 'a', x, log(y))", COLUMNS).columns() == {"city", "x", "y"}
