"""The two models every serving benchmark uses, fitted the way the train service fits them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from services.train.fitting import build_pipeline
from shared.pipeline_spec import PipelineSpec
from tests.integration.deploy.fixtures import TARGET, Dataset, dataset

Kind = Literal["lr", "rf"]
KINDS: tuple[Kind, ...] = ("lr", "rf")
ESTIMATORS: dict[Kind, tuple[str, dict[str, Any]]] = {
    "lr": ("sklearn.linear_model.LogisticRegression", {"max_iter": 2000}),
    "rf": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100}),
}
LABELS = {"lr": "logistic regression", "rf": "random forest (100 trees)"}


def spec_for(kind: Kind, name: str) -> PipelineSpec:
    """A classification spec for the breast-cancer data with the model ``kind``."""
    path, params = ESTIMATORS[kind]
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": TARGET,
            "task": "classification",
            "estimator": {"path": path, "params": params},
            "approval": "auto",
        }
    )


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline with its spec and data."""

    kind: Kind
    spec: PipelineSpec
    model: Pipeline
    data: Dataset


@cache
def fitted(kind: Kind, name: str) -> Fitted:
    """The platform's preprocessing + estimator (n_jobs=1), fitted on the breast-cancer train split."""
    data = dataset()
    spec = spec_for(kind, name)
    model = build_pipeline(spec, numeric=data.features, categorical=[])
    model.fit(data.train[data.features], data.train[TARGET])
    return Fitted(kind=kind, spec=spec, model=model, data=data)


def rows(data: Dataset) -> list[dict[str, float]]:
    """Every row of the data set as an endpoint takes it (traffic that looks like training data)."""
    return data.rows(pd.concat([data.train, data.test]))


def bodies(data: Dataset, *, wrap: str | None = None) -> list[bytes]:
    """One-row JSON request bodies; ``wrap`` nests the row (``{"dataframe_records": [row]}`` for MLflow)."""
    out = []
    for row in rows(data):
        payload: Any = row if wrap is None else {wrap: [row]}
        out.append(json.dumps(payload).encode())
    return out


def scoring_frame(data: Dataset, *, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` rows resampled from the data set with a little noise, plus an id column."""
    rng = np.random.default_rng(seed)
    source = pd.concat([data.train, data.test])[data.features].to_numpy()
    picked = source[rng.integers(0, len(source), size=n_rows)]
    noisy = picked * rng.normal(1.0, 0.01, size=picked.shape)
    frame = pd.DataFrame(noisy, columns=data.features)
    frame.insert(0, "customer_id", np.arange(n_rows, dtype=np.int64))
    return frame
