"""The search: a one-candidate search on worker processes gives what scikit-learn's search gives."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold

from services.train.fitting import ESTIMATOR_STEP, build_pipeline
from services.train.search import search
from shared.pipeline_spec import SearchSpec
from tests.unit.train.test_fitting import make_spec


def test_one_candidate_on_workers_matches_the_search_in_process() -> None:
    frame = load_breast_cancer(as_frame=True).frame
    x, y = frame.drop(columns="target"), frame["target"]
    spec = make_spec(
        task="classification",
        estimator={"path": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
    )
    space = {f"{ESTIMATOR_STEP}__C": [0.5]}
    results = [
        search(
            build_pipeline(spec, numeric=list(x.columns), categorical=[]),
            space,
            x,
            y,
            spec=SearchSpec(space={"C": [0.5]}, folds=4),
            scoring="accuracy",
            cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=7),
            seed=7,
            n_jobs=n_jobs,
        )
        for n_jobs in (1, 2)  # GridSearchCV in this process; the folds beside the final fit on workers
    ]
    in_process, on_workers = results
    assert on_workers.n_candidates == in_process.n_candidates == 1
    assert on_workers.best_params == in_process.best_params == {f"{ESTIMATOR_STEP}__C": 0.5}
    assert len(on_workers.fold_scores) == 4
    assert on_workers.fold_scores == in_process.fold_scores
    assert on_workers.best.named_steps[ESTIMATOR_STEP].C == 0.5
    np.testing.assert_array_equal(on_workers.best.predict_proba(x), in_process.best.predict_proba(x))
