"""Dataset reading and the validation rules, each on a small frame."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.ingest.reading import DatasetReadError
from services.ingest.rules.bias import check_imbalance, check_label_bias
from services.ingest.rules.quality import (
    check_classes,
    check_duplicates,
    check_min_rows,
    check_missing,
    check_not_empty,
)
from services.ingest.validation import errors_in, read_dataset, unreadable, validate_dataset, warnings_in
from shared.events.envelope import RuleResult
from shared.pipeline_spec import PipelineSpec
from shared.profile import profile_frame
from tests.synthetic import synthetic_table


def make_spec(**fields: Any) -> PipelineSpec:
    validation = {"min_rows": 4, "min_group_rows": 1} | fields.pop("validation", {})
    base = {"name": "churn", "target": "y", "task": "classification", "validation": validation}
    return PipelineSpec.from_mapping(base | fields)


def good_frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(50_000, 10_000, rows),
            "plan": rng.choice(["basic", "pro"], rows),
            "y": [0, 1] * (rows // 2),
        }
    )


def by_rule(results: list[RuleResult], rule: str) -> list[RuleResult]:
    return [r for r in results if r.rule == rule]


def one(results: list[RuleResult], rule: str, column: str | None = None) -> RuleResult:
    (found,) = [r for r in by_rule(results, rule) if column is None or r.column == column]
    return found


# Reading


def test_read_csv_and_parquet() -> None:
    frame = good_frame()
    assert read_dataset(frame.to_csv(index=False).encode(), fmt="csv").shape == frame.shape
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    pd.testing.assert_frame_equal(read_dataset(buffer.getvalue(), fmt="parquet"), frame)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "csv", "empty"),
        (b"  \n\n", "csv", "empty"),
        (b"a,b\n", "csv", "no data rows"),
        (b'a,b\n1,2\n3,4,5,6\n"unclosed', "csv", "cannot be parsed"),
        (b"PAR1 this is not parquet", "parquet", "cannot be parsed"),
        (b"a,b\n1,2\n", "xlsx", "unknown format"),
    ],
)
def test_read_refuses_unusable_files(data: bytes, fmt: Any, message: str) -> None:
    with pytest.raises(DatasetReadError, match=message):
        read_dataset(data, fmt=fmt)


def test_read_refuses_an_empty_parquet_file() -> None:
    buffer = io.BytesIO()
    good_frame().iloc[:0].to_parquet(buffer)
    with pytest.raises(DatasetReadError, match="no data rows"):
        read_dataset(buffer.getvalue(), fmt="parquet")


# The whole run


def test_a_good_dataset_has_no_errors() -> None:
    results = validate_dataset(good_frame(), spec=make_spec())
    assert errors_in(results) == [] and warnings_in(results) == []
    rules = {r.rule for r in results}
    assert {
        "schema.required_columns",
        "quality.not_empty",
        "quality.min_rows",
        "quality.target",
        "quality.missing_ratio",
        "quality.duplicate_rows",
        "quality.target_classes",
        "bias.class_imbalance",
    } <= rules
    assert {r.column for r in by_rule(results, "quality.missing_ratio")} == {
        "y",
        "age",
        "income",
        "plan",
    }


# Schema


def test_missing_target_and_feature_columns() -> None:
    spec = make_spec(features={"numeric": ["age", "height"]})
    results = validate_dataset(good_frame().drop(columns=["y"]), spec=spec)
    rule = one(results, "schema.required_columns")
    assert not rule.passed and rule.figure == 2
    assert "y" in rule.message and "height" in rule.message
    # Nothing about the target can be measured without it.
    assert not by_rule(results, "quality.target")


def test_text_where_a_number_belongs() -> None:
    frame = good_frame(10).assign(age=["31", "n/a", "40", "x", "22", "5", "6", "7", "8", "9"])
    results = validate_dataset(frame, spec=make_spec(features={"numeric": ["age", "income"]}))
    rule = one(results, "schema.feature_type", "age")
    assert not rule.passed and rule.severity == "error"
    assert rule.figure == pytest.approx(0.2)
    assert "'n/a'" in rule.message
    assert one(results, "schema.feature_type", "income").passed


def test_numbers_stored_as_text_also_fail() -> None:
    frame = good_frame(10).assign(age=[str(i) for i in range(10)])
    rule = one(
        validate_dataset(frame, spec=make_spec(features={"numeric": ["age"]})),
        "schema.feature_type",
    )
    assert not rule.passed and rule.figure == 0.0


def test_columns_added_and_removed_against_previous_profile() -> None:
    spec = make_spec()
    previous_frame = good_frame().assign(note="x")
    previous = profile_frame(previous_frame, numeric=["age", "income"], categorical=["plan"])
    current = good_frame().drop(columns=["income"]).assign(extra=1.0)
    results = validate_dataset(current, spec=spec, previous_profile=previous)
    added = one(results, "schema.columns_added")
    removed = one(results, "schema.columns_removed")
    assert (added.passed, added.severity, added.figure) == (False, "warning", 1)
    assert "extra" in added.message
    # 'note' was no feature: a warning; 'income' was one: the dataset cannot be used.
    assert (removed.passed, removed.severity, removed.figure) == (False, "warning", 1)
    assert "note" in removed.message
    required = one(results, "schema.required_columns")
    assert not required.passed and "income" in required.message


def test_a_previous_numeric_feature_turned_text_fails() -> None:
    previous = profile_frame(good_frame(), numeric=["age", "income"], categorical=["plan"])
    current = good_frame().assign(age="unknown")
    results = validate_dataset(current, spec=make_spec(), previous_profile=previous)
    assert not one(results, "schema.feature_type", "age").passed


# Quality


def test_empty_frame() -> None:
    empty = good_frame().iloc[:0]
    rule = check_not_empty(empty)
    assert not rule.passed and rule.figure == 0
    results = validate_dataset(empty, spec=make_spec())
    assert [r.rule for r in errors_in(results)] == ["quality.not_empty"]


def test_min_rows() -> None:
    assert check_min_rows(good_frame(10), minimum=10).passed
    rule = check_min_rows(good_frame(10), minimum=11)
    assert (rule.passed, rule.figure, rule.threshold) == (False, 10, 11)


def test_missing_ratio_per_column() -> None:
    frame = pd.DataFrame({"a": [1, None, None, 4, 5], "y": [0, 1, 0, 1, 0]})
    results = check_missing(frame, columns=["a", "y"], spec=make_spec())
    a, y = one(results, "quality.missing_ratio", "a"), one(results, "quality.missing_ratio", "y")
    assert (a.passed, a.figure, a.threshold) == (False, pytest.approx(0.4), 0.2)
    assert (y.passed, y.figure) == (True, 0.0)


def test_duplicate_rows_ratio() -> None:
    frame = pd.DataFrame({"a": [1, 1, 1, 2, 3, 4, 5, 6], "y": [0, 0, 0, 1, 0, 1, 0, 1]})
    rule = check_duplicates(frame, maximum=0.2)
    assert (rule.passed, rule.figure) == (False, pytest.approx(0.25))
    assert check_duplicates(frame, maximum=0.25).passed


def test_target_with_no_values_and_partly_missing() -> None:
    none = good_frame(6).assign(y=None)
    assert not one(validate_dataset(none, spec=make_spec()), "quality.target").passed
    partly = good_frame(6).assign(y=[0, 1, None, 1, 0, 1])
    rule = one(validate_dataset(partly, spec=make_spec()), "quality.target")
    assert rule.passed and rule.figure == 5 and "1 rows without a target" in rule.message


def test_regression_target_must_be_numeric() -> None:
    spec = make_spec(task="regression")
    frame = good_frame(6).assign(y=["cheap", "dear"] * 3)
    rule = one(validate_dataset(frame, spec=spec), "quality.target")
    assert not rule.passed and "numeric" in rule.message


def test_classification_needs_two_classes() -> None:
    rule = check_classes(good_frame(6).assign(y=1), target="y")
    assert (rule.passed, rule.figure, rule.threshold) == (False, 1, 2)
    assert check_classes(good_frame(6), target="y").passed


# Bias before training


def test_class_imbalance_ratio() -> None:
    frame = pd.DataFrame({"y": ["no"] * 6 + ["yes"] * 2})
    rule = check_imbalance(frame, spec=make_spec(validation={"max_class_imbalance": 2.0}))
    # Majority / minority = 6 / 2, computed by hand.
    assert (rule.passed, rule.figure, rule.threshold) == (False, 3.0, 2.0)
    assert check_imbalance(frame, spec=make_spec(validation={"max_class_imbalance": 3.0})).passed


def bias_frame() -> pd.DataFrame:
    # Group A: 3 of 4 positive; group B: 1 of 4 positive.
    return pd.DataFrame(
        {
            "group": ["A"] * 4 + ["B"] * 4,
            "y": [1, 1, 1, 0, 1, 0, 0, 0],  # A, then B
        }
    )


def test_positive_rate_difference_across_groups() -> None:
    spec = make_spec(sensitive_attribute="group")
    rule = check_label_bias(bias_frame(), spec=spec)
    assert rule.figure == pytest.approx(0.75 - 0.25)
    assert (rule.passed, rule.threshold, rule.column) == (False, 0.2, "group")
    assert "A: 75.0%" in rule.message and "B: 25.0%" in rule.message
    lenient = make_spec(sensitive_attribute="group", validation={"max_bias_difference": 0.5})
    assert check_label_bias(bias_frame(), spec=lenient).passed


def test_declared_positive_label_counts() -> None:
    # Counting 0 as the positive label: A 1/4, B 3/4, the same spread.
    spec = make_spec(sensitive_attribute="group", positive_label=0)
    assert check_label_bias(bias_frame(), spec=spec).figure == pytest.approx(0.5)
    absent = make_spec(sensitive_attribute="group", positive_label="maybe")
    rule = check_label_bias(bias_frame(), spec=absent)
    assert not rule.passed and "does not occur" in rule.message


def test_small_groups_are_left_out_of_the_bias_figure() -> None:
    frame = pd.concat([bias_frame(), pd.DataFrame({"group": ["C"], "y": [1]})])
    spec = make_spec(sensitive_attribute="group", validation={"min_group_rows": 2})
    rule = check_label_bias(frame, spec=spec)
    assert rule.figure == pytest.approx(0.5) and "C" not in rule.message
    alone = make_spec(sensitive_attribute="group", validation={"min_group_rows": 5})
    rule = check_label_bias(frame, spec=alone)
    assert rule.passed and rule.figure is None


def test_bias_rules_run_in_the_whole_validation() -> None:
    frame = pd.concat([bias_frame()] * 3, ignore_index=True).assign(x=range(24))
    results = validate_dataset(frame, spec=make_spec(sensitive_attribute="group"))
    assert [r.rule for r in errors_in(results)] == ["bias.positive_rate_difference"]


# Drift


def test_drift_against_previous_profile_is_a_warning() -> None:
    spec = make_spec()
    previous = profile_frame(good_frame(400), numeric=["age", "income"], categorical=["plan"])
    same = validate_dataset(good_frame(400), spec=spec, previous_profile=previous)
    assert all(r.passed for r in by_rule(same, "drift.psi"))
    assert {r.column for r in by_rule(same, "drift.psi")} == {"age", "income", "plan"}
    shifted = good_frame(400).assign(income=lambda f: f["income"] + 20_000)
    results = validate_dataset(shifted, spec=spec, previous_profile=previous)
    rule = one(results, "drift.psi", "income")
    assert (rule.passed, rule.severity, rule.threshold) == (False, "warning", 0.2)
    assert rule.figure is not None and rule.figure > 0.25
    assert errors_in(results) == [] and warnings_in(results) == [rule]


def test_results_fit_event_limits_whatever_the_data_holds() -> None:
    long_name = "c" * 300
    frame = good_frame().assign(**{long_name: None})
    spec = make_spec(features={"numeric": ["age", *(f"gone{i}" for i in range(500))]})
    results = validate_dataset(frame, spec=spec)
    assert len(one(results, "schema.required_columns").message) < 4000
    assert "and 480 more" in one(results, "schema.required_columns").message
    missing = by_rule(validate_dataset(frame, spec=make_spec()), "quality.missing_ratio")
    assert any(r.column == long_name[:200] and not r.passed for r in missing)


def test_unreadable_file_becomes_a_failed_rule() -> None:
    with pytest.raises(DatasetReadError) as caught:
        read_dataset(b"", fmt="csv")
    rule = unreadable(caught.value)
    assert (rule.rule, rule.passed, rule.severity) == ("read.parse", False, "error")
    assert "empty" in rule.message


def test_duplicate_ratio_by_row_hashes_equals_pandas() -> None:
    frame = synthetic_table(5_000, seed=2).to_pandas().drop(columns=["customer_id"])
    frame = pd.concat([frame, frame.iloc[:300], frame.iloc[:50]], ignore_index=True)  # NaNs repeat too
    rule = check_duplicates(frame, maximum=1.0)
    assert rule.figure == pytest.approx(float(frame.duplicated().mean())) and rule.figure > 0
