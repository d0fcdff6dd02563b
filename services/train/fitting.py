"""Fitting: the preprocessing + estimator pipeline, and its hyper-parameter search."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    KBinsDiscretizer,
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
)

from services.train.search import search, search_jobs
from shared.features.transformers import DerivedColumns, LogTransform, derived_kinds
from shared.pipeline_spec import (
    FeatureSet,
    ParamValue,
    PipelineSpec,
    estimator_class,
    resolve_features,
)
from shared.profile import as_categories

# scikit-learn scorer per metric; "neg_" scorers are turned back into the metric's own sign.
SCORERS: Mapping[str, str] = MappingProxyType(
    {
        "accuracy": "accuracy",
        "precision_macro": "precision_macro",
        "recall_macro": "recall_macro",
        "f1_macro": "f1_macro",
        # One-vs-rest, which equals the plain binary ROC AUC when there are two classes.
        "roc_auc": "roc_auc_ovr",
        "log_loss": "neg_log_loss",
        "rmse": "neg_root_mean_squared_error",
        "mae": "neg_mean_absolute_error",
        "r2": "r2",
    }
)
ESTIMATOR_STEP = "estimator"
MISSING_CATEGORY = "__missing__"
# Estimators whose n_jobs does nothing and warns when set (deprecated in scikit-learn 1.8).
_N_JOBS_IGNORED = frozenset({"sklearn.linear_model.LogisticRegression"})


@dataclass(frozen=True)
class FitResult:
    """The refitted best pipeline and what the search measured on the way."""

    pipeline: Pipeline
    best_params: dict[str, Any]
    hyperparameters: dict[str, Any]
    cv_metric: str
    cv_score: float
    cv_scores: list[float]
    search_space: dict[str, list[Any]]
    n_candidates: int
    fit_seconds: float
    features: FeatureSet


def build_pipeline(spec: PipelineSpec, *, numeric: Sequence[str], categorical: Sequence[str]) -> Pipeline:
    """Derived columns, preprocessing for the named features, then the spec's estimator.

    ``numeric`` and ``categorical`` are the raw input columns (what a request carries); derived
    columns are computed by the pipeline's first step, so serving computes them the same way.
    """
    if not numeric and not categorical:
        raise ValueError("a model needs at least one feature")
    prep = spec.preprocessing
    steps: list[tuple[str, Any]] = []
    if spec.features.derived:
        derived = tuple((d.name, d.expr) for d in spec.features.derived)
        kinds = derived_kinds(derived, numeric=tuple(numeric), categorical=tuple(categorical))
        steps.append(("derive", DerivedColumns(derived, tuple(numeric), tuple(categorical))))
        numeric = [*numeric, *(name for name, kind in kinds.items() if kind == "number")]
        categorical = [*categorical, *(name for name, kind in kinds.items() if kind == "text")]
    if prep.numeric.log:
        steps.append(("log", LogTransform(tuple(prep.numeric.log))))
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy=prep.numeric.imputer))]
    if prep.numeric.scale:
        numeric_steps.append(("scale", StandardScaler()))
    if prep.numeric.polynomial_degree is not None:
        numeric_steps.append(
            ("polynomial", PolynomialFeatures(degree=prep.numeric.polynomial_degree, include_bias=False))
        )
    if prep.numeric.quantile_bins is not None:
        numeric_steps.append(("bins", _quantile_bins(prep.numeric.quantile_bins, seed=spec.seed)))
    categorical_imputer = (
        SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)
        if prep.categorical.imputer == "constant"
        else SimpleImputer(strategy="most_frequent")
    )
    categorical_steps = [
        # One spelling per category: 1, 1.0 and "1" from CSV, Parquet or JSON are the same.
        ("as_text", FunctionTransformer(as_categories_frame, feature_names_out="one-to-one")),
        ("impute", categorical_imputer),
        # Fixed-width text, not Python objects: the encoder then counts and maps categories in
        # numpy's vectorised code instead of a Python loop per value (seconds per million rows).
        ("as_array", FunctionTransformer(as_text_array, feature_names_out="one-to-one")),
        (
            "one_hot",
            OneHotEncoder(
                handle_unknown="ignore",
                max_categories=prep.categorical.max_categories,
                sparse_output=False,
            ),
        ),
    ]
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), list(numeric)),
            ("categorical", Pipeline(categorical_steps), list(categorical)),
        ],
        remainder="drop",
    )
    return Pipeline([*steps, ("preprocess", preprocess), (ESTIMATOR_STEP, _estimator(spec))])


def fit_with_search(
    spec: PipelineSpec, train_frame: pd.DataFrame, *, features: FeatureSet | None = None, n_jobs: int = 1
) -> FitResult:
    """Search the spec's space by seeded cross-validation, then refit the best on all of train.

    ``features`` are those pinned by the dataset's profile; by default they are resolved from
    ``train_frame`` as ``resolve_features`` does. ``n_jobs`` processes fit the folds and
    candidates side by side; the folds are seeded, so the result does not depend on it.
    """
    started = time.perf_counter()
    if features is None:
        features = resolve_features(spec, train_frame)
    labelled = train_frame[train_frame[spec.target].notna()]
    x, y = labelled[list(features.columns)], labelled[spec.target]
    pipeline = build_pipeline(spec, numeric=features.numeric, categorical=features.categorical)
    search_spec = spec.estimator.search
    splitter = StratifiedKFold if spec.task == "classification" else KFold
    searched = search(
        pipeline,
        {f"{ESTIMATOR_STEP}__{k}": list(v) for k, v in search_spec.space.items()},
        x,
        y,
        spec=search_spec,
        scoring=SCORERS[spec.scoring],
        cv=splitter(n_splits=search_spec.folds, shuffle=True, random_state=spec.seed),
        seed=spec.seed,
        n_jobs=search_jobs(search_spec, rows=len(x), n_jobs=n_jobs),
    )
    sign = -1.0 if SCORERS[spec.scoring].startswith("neg_") else 1.0
    folds = [sign * score for score in searched.fold_scores]
    best_params = {k.removeprefix(f"{ESTIMATOR_STEP}__"): v for k, v in searched.best_params.items()}
    return FitResult(
        pipeline=searched.best,
        best_params=best_params,
        hyperparameters=_effective_params(searched.best, spec=spec),
        cv_metric=spec.scoring,
        cv_score=float(np.mean(folds)),
        cv_scores=folds,
        search_space={k: list(v) for k, v in search_spec.space.items()},
        n_candidates=searched.n_candidates,
        fit_seconds=time.perf_counter() - started,
        features=features,
    )


def as_categories_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as category strings (missing stays NaN); module-level so models pickle."""
    return pd.DataFrame(frame).apply(as_categories)


def _quantile_bins(n_bins: int, *, seed: int) -> KBinsDiscretizer:
    # Quantile edges from all rows (no subsample), so the bins do not depend on sampling.
    return KBinsDiscretizer(
        n_bins=n_bins,
        encode="onehot-dense",
        strategy="quantile",
        quantile_method="averaged_inverted_cdf",
        subsample=None,
        random_state=seed,
    )


def as_text_array(values: Any) -> np.ndarray:
    """Imputed category strings as a fixed-width text array; module-level so models pickle."""
    return np.asarray(values, dtype=str)


def _estimator(spec: PipelineSpec) -> Any:
    cls = estimator_class(spec.estimator.path)
    accepted = cls().get_params()
    params: dict[str, ParamValue] = dict(spec.estimator.params)
    if "random_state" in accepted:
        params["random_state"] = spec.seed
    # One job per fit: the service decides parallelism, not the estimator.
    if "n_jobs" in accepted and spec.estimator.path not in _N_JOBS_IGNORED:
        params["n_jobs"] = 1
    return cls(**params)


def _effective_params(pipeline: Pipeline, *, spec: PipelineSpec) -> dict[str, Any]:
    """The estimator's fixed, searched and platform-set parameters.

    Defaults are left out, except those the spec names: a search that picked the default value
    still says which value it picked.
    """
    defaults = estimator_class(spec.estimator.path)().get_params()
    named = {*spec.estimator.params, *spec.estimator.search.space}
    chosen = pipeline.named_steps[ESTIMATOR_STEP].get_params()
    return {k: v for k, v in chosen.items() if k in named or not _same(v, defaults.get(k, object()))}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
