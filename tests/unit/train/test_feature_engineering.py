"""Declared feature engineering inside the fitted pipeline: derived columns and the added transformers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes

from services.deploy.serving.predict import ModelCard, predict_frame, rows_frame
from services.train.fitting import build_pipeline, fit_with_search
from shared.features.transformers import DerivedColumns, LogTransform
from shared.model_format import dump_model, load_model
from shared.pipeline_spec import PipelineSpec, SpecError

DERIVED = [
    {"name": "bmi_per_age", "expr": "bmi / clip(age + 0.2, 0.01, 1)"},
    {"name": "heavy", "expr": "bmi > 0.05 and s5 > 0"},
    {"name": "band", "expr": "where(heavy == 1, 'heavy', where(bmi < 0, 'light', 'middle'))"},
    {"name": "visit_month", "expr": "month(visit)"},
    {"name": "late", "expr": "days_between(visit, '2025-01-01') < 180"},
]


def frame() -> pd.DataFrame:
    data = load_diabetes(as_frame=True).frame
    days = np.arange(len(data)) % 365
    data["visit"] = (pd.Timestamp("2024-01-01") + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d")
    return data


def spec(**preprocessing: Any) -> PipelineSpec:
    return PipelineSpec.from_mapping(
        {
            "name": "diabetes",
            "target": "target",
            "task": "regression",
            "features": {"numeric": ["age", "bmi", "bp", "s5"], "categorical": ["visit"], "derived": DERIVED},
            "preprocessing": {"numeric": preprocessing},
            "estimator": {"path": "sklearn.linear_model.Ridge", "search": {"folds": 2}},
        }
    )


def test_derived_columns_feed_the_model_from_the_raw_columns() -> None:
    pipeline = build_pipeline(spec(), numeric=["age", "bmi", "bp", "s5"], categorical=["visit"])
    assert [name for name, _ in pipeline.steps] == ["derive", "preprocess", "estimator"]
    branches = {name: columns for name, _, columns in pipeline.named_steps["preprocess"].transformers}
    assert branches["numeric"] == ["age", "bmi", "bp", "s5", "bmi_per_age", "heavy", "visit_month", "late"]
    assert branches["categorical"] == ["visit", "band"]


def test_the_derive_step_computes_booleans_as_numbers_and_text_as_categories() -> None:
    derive = DerivedColumns(
        (("r", "x / y"), ("big", "r > 1"), ("size", "where(big == 1, 'L', 'S')")), ("x", "y")
    )
    out = derive.fit(pd.DataFrame({"x": [4.0, 1.0], "y": [2.0, 0.0]})).transform(
        pd.DataFrame({"x": [4.0, 1.0], "y": [2.0, 0.0]})
    )
    assert out["r"].tolist()[0] == 2.0 and np.isnan(out["r"].tolist()[1])
    assert out["big"].tolist() == [1.0, 0.0]
    assert out["size"].tolist() == ["L", "S"]
    assert derive.kinds_ == {"r": "number", "big": "number", "size": "text"}


@pytest.mark.parametrize(
    "preprocessing",
    [{}, {"log": ["s5", "bmi_per_age"]}, {"polynomial_degree": 2}, {"quantile_bins": 4, "scale": False}],
)
def test_a_stored_model_predicts_served_rows_as_the_fitted_pipeline_does(
    preprocessing: dict[str, Any],
) -> None:
    data = frame()
    fit = fit_with_search(spec(**preprocessing), data)
    raw = data[["age", "bmi", "bp", "s5", "visit"]]
    # What serving does: the skops artifact through the allow-list, rows as JSON gives them.
    served = load_model(dump_model(fit.pipeline))
    card = ModelCard(
        pipeline="diabetes",
        version=1,
        task="regression",
        numeric=fit.features.numeric,
        categorical=fit.features.categorical,
        sha256="0" * 64,
    )
    rows = raw.head(40).to_dict(orient="records")
    predicted = predict_frame(served, rows_frame(rows, card), card).labels
    np.testing.assert_allclose(predicted, fit.pipeline.predict(raw.head(40)), rtol=1e-12)
    assert fit.features.columns == ("age", "bmi", "bp", "s5", "visit")


def test_the_added_transformers_are_in_the_pipeline() -> None:
    numeric = ["age", "bmi", "bp", "s5"]
    logged = build_pipeline(spec(log=["s5"]), numeric=numeric, categorical=["visit"])
    assert isinstance(logged.named_steps["log"], LogTransform)
    polynomial = build_pipeline(spec(polynomial_degree=3), numeric=numeric, categorical=["visit"])
    steps = polynomial.named_steps["preprocess"].transformers[0][1].named_steps
    assert steps["polynomial"].degree == 3
    binned = build_pipeline(spec(quantile_bins=5), numeric=numeric, categorical=["visit"])
    bins = binned.named_steps["preprocess"].transformers[0][1].named_steps["bins"]
    assert (bins.n_bins, bins.strategy) == (5, "quantile")


def test_log_transform_keeps_sign_and_zero() -> None:
    out = (
        LogTransform(("x",))
        .fit(pd.DataFrame({"x": [0.0]}))
        .transform(pd.DataFrame({"x": [0.0, np.e - 1, -(np.e - 1)]}))
    )
    np.testing.assert_allclose(out["x"], [0.0, 1.0, -1.0])


def test_the_transformers_survive_clone_as_a_search_needs() -> None:
    derive = DerivedColumns((("r", "x / 2"),), ("x",))
    assert clone(derive).get_params() == derive.get_params()
    assert clone(LogTransform(("x",))).get_params() == {"columns": ("x",)}


def test_a_bad_expression_is_refused_when_the_spec_is_applied() -> None:
    with pytest.raises(SpecError) as caught:
        PipelineSpec.from_mapping(
            {
                "name": "p",
                "target": "y",
                "task": "regression",
                "features": {
                    "numeric": ["x"],
                    "derived": [
                        {"name": "ok", "expr": "x * 2"},
                        {"name": "leak", "expr": "y * 2"},
                        {"name": "bad", "expr": "x ** 99"},
                        {"name": "x", "expr": "ok + 1"},
                    ],
                },
                "preprocessing": {"numeric": {"log": ["nope"], "polynomial_degree": 2, "quantile_bins": 3}},
            }
        )
    assert caught.value.problems == [
        "features.derived.3 (x): the name is already a column of the data or another derived column",
        "features.derived.1 (leak): unknown column 'y' (known columns: ok, x) (at column 1); "
        "expressions read the columns declared in features.numeric / features.categorical",
        "features.derived.2 (bad): the exponent 99 is beyond ±10 (at column 6)",
        "preprocessing.numeric: choose polynomial_degree or quantile_bins, not both",
        "preprocessing.numeric.log: ['nope'] are not declared numeric features",
    ]


def test_expressions_change_the_spec_version() -> None:
    one = PipelineSpec.from_mapping(
        {
            "name": "p",
            "target": "y",
            "task": "regression",
            "features": {"numeric": ["x"], "derived": [{"name": "d", "expr": "x * 2"}]},
        }
    )
    two = PipelineSpec.from_mapping(
        {
            "name": "p",
            "target": "y",
            "task": "regression",
            "features": {"numeric": ["x"], "derived": [{"name": "d", "expr": "x * 3"}]},
        }
    )
    assert one.version != two.version
    assert PipelineSpec.from_yaml(one.to_yaml()) == one
