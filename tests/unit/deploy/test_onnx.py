"""Compiled inference, proven equal: every allow-listed estimator and preprocessing variant either
serves through ONNX Runtime, proven equal on its test split, or serves with scikit-learn and says why."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from services.deploy.compile import choose_runtime, prove
from services.deploy.onnx_graph import convert
from services.deploy.serving.predict import FeatureError, ModelCard, features_frame, rows_frame
from services.deploy.serving.runtime import (
    ONNX_TOLERANCE,
    OnnxInputs,
    OnnxRuntime,
    SklearnRuntime,
    concat_inputs,
    difference,
)
from services.deploy.serving.warmup import WarmupFailed, check, sample
from services.train.fitting import build_pipeline
from shared.pipeline_spec import ESTIMATORS, PipelineSpec

NUMERIC = ("age", "income", "visits")
CATEGORICAL = ("plan", "region", "code")
# Small fixed parameters, so the whole set fits in seconds; the forest keeps its 100 trees.
PARAMS: dict[str, dict[str, Any]] = {
    "GradientBoostingClassifier": {"n_estimators": 20},
    "GradientBoostingRegressor": {"n_estimators": 20},
    "HistGradientBoostingClassifier": {"max_iter": 20},
    "HistGradientBoostingRegressor": {"max_iter": 20},
    "ExtraTreesClassifier": {"n_estimators": 30},
    "ExtraTreesRegressor": {"n_estimators": 30},
    "RandomForestRegressor": {"n_estimators": 30},
}
# Those that serve with scikit-learn today, and why (the reason is recorded on the card):
# - ExtraTreesClassifier: fully grown trees vote exact ties; ONNX's float32 sums break them
#   the other way on a few rows, so labels differ.
# - GradientBoostingClassifier: skl2onnx's double graph declares a type ONNX Runtime refuses.
# - GradientBoostingRegressor: float32 tree sums differ by about 1.5e-6 relative (> tolerance).
# - HistGradientBoosting*: skl2onnx cannot build their tree nodes in double precision.
FALLBACKS = {
    "sklearn.ensemble.ExtraTreesClassifier",
    "sklearn.ensemble.GradientBoostingClassifier",
    "sklearn.ensemble.GradientBoostingRegressor",
    "sklearn.ensemble.HistGradientBoostingClassifier",
    "sklearn.ensemble.HistGradientBoostingRegressor",
}


@cache
def data(rows: int = 600) -> pd.DataFrame:
    """Numbers with gaps, categories spelt several ways (1, 1.0, "1"), with gaps, rare ones and a bool."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 12, rows),
            "income": rng.lognormal(10, 0.5, rows),
            "visits": rng.poisson(3, rows).astype(float),
            "plan": rng.choice(
                np.array(["basic", "pro", "team", None], dtype=object), rows, p=[0.5, 0.3, 0.15, 0.05]
            ),
            "region": rng.choice([f"r{i}" for i in range(12)], rows),  # rare ones merged by max_categories
            "code": rng.choice(np.array([1, 1.0, "1", 2, True, None], dtype=object), rows),
        }
    )
    frame.loc[rng.random(rows) < 0.08, "age"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "visits"] = np.nan
    score = (
        (frame["age"].fillna(40) - 40) / 12 + (frame["plan"] == "pro") * 1.2 + frame["visits"].fillna(0) * 0.2
    )
    frame["churned"] = np.where(score + rng.normal(0, 0.5, rows) > 0.6, "yes", "no")
    frame["spend"] = score * 100 + rng.normal(0, 5, rows)
    return frame


def fitted(
    path: str, *, preprocessing: dict[str, Any] | None = None, categorical: tuple[str, ...] = CATEGORICAL
):
    task = ESTIMATORS[path]
    target = "churned" if task == "classification" else "spend"
    params = PARAMS.get(path.rsplit(".", 1)[1], {})
    spec = PipelineSpec.from_mapping(
        {
            "name": "p",
            "target": target,
            "task": task,
            "estimator": {"path": path, "params": params},
            "preprocessing": preprocessing or {"categorical": {"max_categories": 6}},
        }
    )
    frame = data()
    train, test = frame.iloc[:450], frame.iloc[450:]
    features = [*NUMERIC, *categorical]
    model = build_pipeline(spec, numeric=NUMERIC, categorical=categorical).fit(train[features], train[target])
    card = ModelCard(
        pipeline="p",
        version=1,
        task=task,
        numeric=NUMERIC,
        categorical=categorical,
        classes=tuple(model.classes_.tolist()) if task == "classification" else (),
        sha256="0" * 64,
    )
    return model, card, test


@pytest.mark.parametrize("path", sorted(ESTIMATORS))
def test_every_allow_listed_estimator_is_proven_equal_or_says_why(path: str) -> None:
    model, card, test = fitted(path)
    choice = choose_runtime(model, card, test)
    runtime = choice.runtime
    assert runtime.reason
    assert (runtime.name == "sklearn") == (path in FALLBACKS), runtime.reason
    if runtime.name == "sklearn":  # a recorded fallback, never a silent one
        assert choice.onnx is None and runtime.onnx_sha256 is None
        assert runtime.reason.startswith(
            ("not converted to ONNX: ", "ONNX Runtime could not", "ONNX differs")
        )
        return
    assert choice.onnx is not None and runtime.rows_checked == len(test)
    assert runtime.max_difference is not None and runtime.max_difference <= runtime.tolerance  # type: ignore[operator]
    # Proven on the test split: the same answers through the request path, from JSON rows.
    onnx = OnnxRuntime(choice.onnx, card)
    rows = sample(model, card, test, rows=len(test)).rows
    expected = SklearnRuntime(model, card).predict(features_frame(test, card))
    from_rows = onnx.predict(onnx.inputs_of_rows(rows))
    gap, disagreement = difference(expected, from_rows, card)
    assert disagreement is None and gap <= runtime.tolerance  # type: ignore[operator]


# Estimators whose conversion must hold (the defaults and the benchmarked ones).
@pytest.mark.parametrize(
    "path",
    [
        "sklearn.linear_model.LogisticRegression",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.RandomForestRegressor",
        "sklearn.linear_model.Ridge",
    ],
)
@pytest.mark.parametrize(
    "preprocessing",
    [
        {"categorical": {"max_categories": 6}},
        {"numeric": {"imputer": "mean", "scale": False}, "categorical": {"imputer": "constant"}},
        {
            "numeric": {"imputer": "most_frequent"},
            "categorical": {"imputer": "constant", "max_categories": None},
        },
    ],
)
def test_preprocessing_variants_serve_through_onnx(path: str, preprocessing: dict[str, Any]) -> None:
    model, card, test = fitted(path, preprocessing=preprocessing)
    choice = choose_runtime(model, card, test)
    assert choice.runtime.name == "onnxruntime", choice.runtime.reason
    assert choice.runtime.reason.startswith(f"proven equal on all {len(test)} test-split rows")


def test_numeric_only_pipelines_convert() -> None:
    model, card, test = fitted("sklearn.linear_model.LogisticRegression", categorical=())
    assert choose_runtime(model, card, test).runtime.name == "onnxruntime"


def test_a_conversion_that_does_not_answer_as_scikit_learn_is_refused() -> None:
    model, card, test = fitted("sklearn.ensemble.RandomForestClassifier")
    other, _, _ = fitted("sklearn.ensemble.ExtraTreesClassifier")
    wrong = convert(other, card)  # a valid graph, of another model
    frame = features_frame(test, card)
    choice = prove(model, card, frame, wrong, tolerance=ONNX_TOLERANCE)
    assert choice.runtime.name == "sklearn" and choice.onnx is None
    assert choice.runtime.reason.startswith("ONNX differs from scikit-learn on the test split: ")
    # Labels equal but probabilities off by more than the tolerance: refused too.
    same = convert(model, card)
    assert prove(model, card, frame, same, tolerance=ONNX_TOLERANCE).runtime.name == "onnxruntime"
    nudged = prove(model, card, frame, same, tolerance=-1.0)
    assert nudged.runtime.name == "sklearn" and "more than -1" in nudged.runtime.reason


def test_turned_off_or_empty_test_split_serves_with_scikit_learn() -> None:
    model, card, test = fitted("sklearn.linear_model.LogisticRegression")
    assert "turned off" in choose_runtime(model, card, test, enabled=False).runtime.reason
    assert "empty" in choose_runtime(model, card, test.head(0)).runtime.reason


def test_onnx_inputs_keep_the_request_contract() -> None:
    model, card, _test = fitted("sklearn.linear_model.LogisticRegression")
    onnx = OnnxRuntime(convert(model, card), card)
    row = {"age": 31, "income": 42_000.5, "visits": None, "plan": "pro", "region": "r1", "code": 1}
    extra = {"customer_id": "c-17", **row, "seen_at": "2026-12-02T10:00:00Z"}
    same = onnx.predict(onnx.inputs_of_rows([row])).probabilities
    assert np.array_equal(onnx.predict(onnx.inputs_of_rows([extra])).probabilities, same)  # type: ignore[arg-type]
    for bad, words in [
        ({k: v for k, v in row.items() if k != "income"}, r"row 0: missing features \['income'\]"),
        ({**row, "age": "old"}, "'age' must be a number"),
        ({**row, "age": True}, "'age' must be a number"),
    ]:
        with pytest.raises(FeatureError, match=words):
            onnx.inputs_of_rows([bad])
        with pytest.raises(FeatureError, match=words):
            rows_frame([bad], card)
    # 1, 1.0 and "1" are one category; an unknown category and a missing one are scored, not refused.
    spellings = [{**row, "code": code} for code in (1, 1.0, "1", "never-seen", None)]
    predicted = onnx.predict(onnx.inputs_of_rows(spellings))
    expected = SklearnRuntime(model, card).predict(rows_frame(spellings, card))
    assert predicted.labels == expected.labels
    np.testing.assert_allclose(predicted.probabilities, expected.probabilities, atol=1e-12)  # type: ignore[arg-type]
    assert np.array_equal(predicted.probabilities[0], predicted.probabilities[2])  # type: ignore[index]


def test_a_file_of_numbers_goes_from_arrow_to_the_graph_as_the_frame_path_does() -> None:
    model, card, test = fitted("sklearn.linear_model.LogisticRegression", categorical=())
    onnx = OnnxRuntime(convert(model, card), card, threads=2)
    expected = SklearnRuntime(model, card).predict(features_frame(test, card))
    # Floats with nulls, integers and an extra key column: read straight from Arrow, same answers.
    table = pa.Table.from_pandas(
        test[list(NUMERIC)].assign(visits=test["visits"].astype("Int64"), key=range(len(test))),
        preserve_index=False,
    )
    [batch] = table.to_batches()
    assert table.column("age").null_count and table.column("visits").null_count
    inputs = onnx.inputs_of_batch(batch)
    assert isinstance(inputs, OnnxInputs) and inputs.numeric.flags.c_contiguous
    predicted = onnx.predict(inputs)
    assert predicted.labels == expected.labels
    np.testing.assert_allclose(predicted.probabilities, expected.probabilities, atol=ONNX_TOLERANCE)  # type: ignore[arg-type]
    # What is not a number goes through the frame's typing, which says which feature is wrong.
    texts = batch.set_column(0, "age", pa.array(["old"] * len(test)))
    with pytest.raises(FeatureError, match="'age' must be a number"):
        onnx.inputs_of_batch(texts)
    with pytest.raises(FeatureError, match=r"lacks the model's features \['income'\]"):
        onnx.inputs_of_batch(batch.drop_columns(["income"]))


def test_batched_requests_answer_as_alone() -> None:
    model, card, test = fitted("sklearn.ensemble.RandomForestClassifier")
    onnx = OnnxRuntime(convert(model, card), card)
    rows = sample(model, card, test, rows=5).rows
    parts = [onnx.inputs_of_rows(rows[:2]), onnx.inputs_of_rows(rows[2:])]
    together = onnx.predict(concat_inputs(parts))
    alone = onnx.predict(onnx.inputs_of_rows(rows))
    assert together.labels == alone.labels and len(together.labels) == 5
    assert onnx.predict(onnx.inputs_of_rows([])).labels == []


def test_warm_up_through_onnx_compares_within_the_tolerance() -> None:
    model, card, test = fitted("sklearn.ensemble.RandomForestRegressor")
    onnx = OnnxRuntime(convert(model, card), card)
    warmup = sample(model, card, test, rows=20)
    predicted = onnx.predict(onnx.inputs_of_rows(warmup.rows))
    check(warmup, predicted, tolerance=ONNX_TOLERANCE, regression=True)
    off = predicted.__class__(labels=[v + 1.0 for v in predicted.labels], probabilities=None)  # type: ignore[operator]
    with pytest.raises(WarmupFailed, match="warm-up values differ"):
        check(warmup, off, tolerance=ONNX_TOLERANCE, regression=True)
