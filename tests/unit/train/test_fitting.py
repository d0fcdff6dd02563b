"""Building and fitting pipelines on scikit-learn's bundled data sets."""

from __future__ import annotations

import pickle
from functools import cache
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes

from services.train.fitting import build_pipeline, fit_with_search
from services.train.search import IN_PROCESS_ROW_FITS, search_jobs
from shared.pipeline_spec import FeatureSet, PipelineSpec, SearchSpec


@cache
def breast_cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


@cache
def diabetes() -> pd.DataFrame:
    return load_diabetes(as_frame=True).frame


def make_spec(**fields: Any) -> PipelineSpec:
    return PipelineSpec.from_mapping({"name": "p", "target": "target"} | fields)


def test_pipeline_takes_seed_and_one_job() -> None:
    spec = make_spec(
        task="classification",
        seed=7,
        estimator={"path": "sklearn.ensemble.RandomForestClassifier", "params": {"max_depth": 3}},
    )
    pipeline = build_pipeline(spec, numeric=["a"], categorical=["b"])
    estimator = pipeline.named_steps["estimator"]
    assert estimator.get_params()["random_state"] == 7
    assert estimator.get_params()["n_jobs"] == 1
    assert estimator.get_params()["max_depth"] == 3
    scaler_steps = pipeline.named_steps["preprocess"].transformers[0][1].named_steps
    assert "scale" in scaler_steps


def test_scaling_can_be_turned_off() -> None:
    spec = make_spec(task="regression", preprocessing={"numeric": {"scale": False}})
    pipeline = build_pipeline(spec, numeric=["a"], categorical=[])
    assert "scale" not in pipeline.named_steps["preprocess"].transformers[0][1].named_steps


def test_pipeline_handles_missing_unknown_and_mixed_categories() -> None:
    spec = make_spec(
        task="classification",
        preprocessing={"categorical": {"imputer": "constant"}},
        estimator={"path": "sklearn.linear_model.LogisticRegression"},
    )
    train = pd.DataFrame(
        {
            "a": [1.0, 2.0, None, 4.0, 5.0, 6.0],
            "b": ["x", "y", None, "x", "y", "x"],
            "c": [1, 2, 1, 2, 1, 2],
            "target": [0, 1, 0, 1, 0, 1],
        }
    )
    pipeline = build_pipeline(spec, numeric=["a"], categorical=["b", "c"])
    pipeline.fit(train[["a", "b", "c"]], train["target"])
    # A category never seen, and the same category spelt as text instead of a number.
    serving = pd.DataFrame({"a": [None, 3.0], "b": ["never-seen", "x"], "c": ["1", 2.0]})
    assert pipeline.predict_proba(serving).shape == (2, 2)
    again = pickle.loads(pickle.dumps(pipeline))
    assert (again.predict(serving) == pipeline.predict(serving)).all()


def test_a_pipeline_needs_features() -> None:
    with pytest.raises(ValueError, match="at least one feature"):
        build_pipeline(make_spec(task="regression"), numeric=[], categorical=[])


def test_grid_search_on_breast_cancer() -> None:
    spec = make_spec(
        task="classification",
        primary_metric="accuracy",
        estimator={
            "path": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 500},
            "search": {"space": {"C": [0.1, 1.0]}, "folds": 3},
        },
    )
    result = fit_with_search(spec, breast_cancer())
    assert result.cv_metric == "accuracy"
    assert result.cv_score > 0.9
    assert len(result.cv_scores) == 3 and all(0.85 < s <= 1 for s in result.cv_scores)
    assert result.n_candidates == 2
    assert result.best_params["C"] in (0.1, 1.0)
    assert result.search_space == {"C": [0.1, 1.0]}
    assert result.hyperparameters["random_state"] == 42
    assert result.hyperparameters["max_iter"] == 500
    assert result.hyperparameters["C"] == result.best_params["C"]
    assert result.fit_seconds > 0
    assert len(result.features.numeric) == 30 and result.features.categorical == ()
    # Refitted on the whole train split.
    assert result.pipeline.predict(breast_cancer().drop(columns="target")).shape == (569,)


def test_random_search_is_seeded_and_capped_at_the_grid() -> None:
    spec = make_spec(
        task="classification",
        estimator={
            "path": "sklearn.tree.DecisionTreeClassifier",
            "search": {
                "kind": "random",
                "space": {"max_depth": [2, 4, 6]},
                "n_iter": 10,
                "folds": 3,
                "scoring": "roc_auc",
            },
        },
    )
    first = fit_with_search(spec, breast_cancer())
    second = fit_with_search(spec, breast_cancer())
    assert first.n_candidates == 3
    assert first.cv_metric == "roc_auc" and first.cv_score > 0.85
    assert first.cv_scores == second.cv_scores
    assert first.best_params == second.best_params


def test_log_loss_is_reported_as_a_positive_loss() -> None:
    spec = make_spec(
        task="classification",
        primary_metric="log_loss",
        estimator={
            "path": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 500},
            "search": {"folds": 3},
        },
    )
    result = fit_with_search(spec, breast_cancer())
    assert 0 < result.cv_score < 0.3
    assert result.n_candidates == 1 and result.best_params == {}


def test_regression_on_diabetes() -> None:
    spec = make_spec(
        task="regression",
        estimator={
            "path": "sklearn.linear_model.Ridge",
            "search": {"space": {"alpha": [0.1, 1.0, 10.0]}, "folds": 3},
        },
    )
    result = fit_with_search(spec, diabetes())
    # RMSE in the target's units (disease progression, std about 77): positive and well below it.
    assert result.cv_metric == "rmse"
    assert 40 < result.cv_score < 65
    assert all(s > 0 for s in result.cv_scores)


def test_pinned_features_are_used() -> None:
    spec = make_spec(
        task="regression",
        estimator={"path": "sklearn.linear_model.LinearRegression", "search": {"folds": 3}},
        primary_metric="r2",
    )
    features = FeatureSet(numeric=("bmi", "bp", "s5"))
    result = fit_with_search(spec, diabetes(), features=features)
    assert list(result.pipeline.feature_names_in_) == ["bmi", "bp", "s5"]
    assert result.cv_score > 0.3


def test_a_small_search_stays_in_process_and_a_large_one_gets_the_jobs() -> None:
    grid = SearchSpec(kind="grid", space={"C": [0.1, 1.0, 10.0]}, folds=5)
    assert search_jobs(grid, rows=455, n_jobs=2) == 1  # the demo: 15 fits on 455 rows
    assert search_jobs(grid, rows=500_000, n_jobs=2) == 2
    assert search_jobs(grid, rows=-(-IN_PROCESS_ROW_FITS // 15), n_jobs=4) == 4
    sampled = SearchSpec(kind="random", space={"C": [0.1, 1.0, 10.0], "tol": [1e-4, 1e-3]}, n_iter=2, folds=3)
    assert search_jobs(sampled, rows=IN_PROCESS_ROW_FITS // 6 - 1, n_jobs=2) == 1


def test_a_searched_value_equal_to_the_default_is_recorded() -> None:
    spec = make_spec(
        task="classification",
        estimator={
            "path": "sklearn.linear_model.LogisticRegression",
            "params": {"max_iter": 100},  # scikit-learn's default, named by the spec
            "search": {"space": {"C": [1.0]}, "folds": 3},
        },
    )
    result = fit_with_search(spec, breast_cancer())
    assert result.hyperparameters["C"] == 1.0 and result.hyperparameters["max_iter"] == 100
    assert "tol" not in result.hyperparameters  # a default the spec does not name
