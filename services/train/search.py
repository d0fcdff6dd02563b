"""The hyper-parameter search: seeded cross-validation of each candidate, then the best refitted on all rows.

scikit-learn's searches fit the folds side by side and then refit the winner alone, while the
other cores wait. With one candidate (a spec that searches nothing, the default) the winner is
known before any fold is scored, so its final fit runs beside the folds instead of after them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import (
    BaseCrossValidator,
    GridSearchCV,
    ParameterGrid,
    RandomizedSearchCV,
)
from sklearn.pipeline import Pipeline

from services.train.workers import search_workers
from shared.pipeline_spec import SearchSpec

# Below this many rows times fits, a search runs in this process whatever n_jobs says: starting
# joblib's worker processes (each importing scikit-learn and pandas) costs seconds on a cold
# service, far more than the fits (the demo's 15 fits on 455 rows take under 0.5 s in process).
IN_PROCESS_ROW_FITS = 200_000


@dataclass(frozen=True)
class Searched:
    """The best candidate refitted on all rows, and its scores on each fold (the scorer's sign)."""

    best: Pipeline
    best_params: dict[str, Any]
    fold_scores: list[float]
    n_candidates: int


def search(
    pipeline: Pipeline,
    space: Mapping[str, Sequence[Any]],
    x: pd.DataFrame,
    y: pd.Series,
    *,
    spec: SearchSpec,
    scoring: str,
    cv: BaseCrossValidator,
    seed: int,
    n_jobs: int,
) -> Searched:
    """Cross-validate the candidates of ``space`` (step-prefixed names) on ``n_jobs`` processes."""
    with search_workers():
        if n_jobs > 1 and candidates(spec) == 1:
            only = ParameterGrid(space)[0]
            return _one_candidate(pipeline, only, x, y, scoring=scoring, cv=cv, n_jobs=n_jobs)
        common: dict[str, Any] = {
            "scoring": scoring,
            "cv": cv,
            "refit": True,
            "n_jobs": n_jobs,
            "error_score": "raise",
        }
        searcher: GridSearchCV | RandomizedSearchCV
        if spec.kind == "grid":
            searcher = GridSearchCV(pipeline, space, **common)
        else:
            searcher = RandomizedSearchCV(
                pipeline, space, n_iter=candidates(spec), random_state=seed, **common
            )
        searcher.fit(x, y)
    best = searcher.best_index_
    return Searched(
        best=searcher.best_estimator_,
        best_params=dict(searcher.best_params_),
        fold_scores=[float(searcher.cv_results_[f"split{i}_test_score"][best]) for i in range(spec.folds)],
        n_candidates=len(searcher.cv_results_["params"]),
    )


def _one_candidate(
    pipeline: Pipeline,
    params: dict[str, Any],
    x: pd.DataFrame,
    y: pd.Series,
    *,
    scoring: str,
    cv: BaseCrossValidator,
    n_jobs: int,
) -> Searched:
    candidate = clone(pipeline).set_params(**params)
    scorer = check_scoring(candidate, scoring=scoring)
    # The final fit first: it is the longest task, and the folds fill the other workers around it.
    final, *scores = Parallel(n_jobs=n_jobs)(
        [
            delayed(_fitted)(candidate, x, y),
            *(delayed(_fold_score)(candidate, x, y, train, test, scorer) for train, test in cv.split(x, y)),
        ]
    )
    return Searched(best=final, best_params=params, fold_scores=scores, n_candidates=1)


def _fitted(candidate: Pipeline, x: pd.DataFrame, y: pd.Series) -> Pipeline:
    return clone(candidate).fit(x, y)


def _fold_score(
    candidate: Pipeline, x: pd.DataFrame, y: pd.Series, train: np.ndarray, test: np.ndarray, scorer: Any
) -> float:
    fitted = clone(candidate).fit(x.iloc[train], y.iloc[train])
    return float(scorer(fitted, x.iloc[test], y.iloc[test]))


def search_jobs(search: SearchSpec, *, rows: int, n_jobs: int) -> int:
    """The processes a search gets: ``n_jobs``, or this one alone when its fits are small."""
    return 1 if rows * candidates(search) * search.folds < IN_PROCESS_ROW_FITS else n_jobs


def candidates(search: SearchSpec) -> int:
    """How many parameter settings a search tries: the whole grid, or n_iter draws of it."""
    grid = _grid_size(search.space)
    # Sampling more than the grid holds would only repeat candidates (and warn).
    return grid if search.kind == "grid" else min(search.n_iter, grid)


def _grid_size(space: Mapping[str, Sequence[Any]]) -> int:
    return math.prod(len(values) for values in space.values()) if space else 1
