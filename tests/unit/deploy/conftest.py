"""Small real models for the deploy unit tests (fitted in-process, no servers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from services.deploy.serving.predict import ModelCard


@dataclass(frozen=True)
class Fitted:
    """A fitted model, its card and the frame it was fitted on."""

    model: Pipeline
    card: ModelCard
    frame: pd.DataFrame


def _frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "income": rng.normal(50_000, 10_000, rows),
            "plan": rng.choice(["basic", "pro", "team"], rows),
        }
    )


@pytest.fixture(scope="session")
def classifier() -> Fitted:
    """A churn-like classifier over two numeric and one categorical feature."""
    frame = _frame()
    target = np.where(frame["age"] + (frame["plan"] == "pro") * 10 > 45, "yes", "no")
    model = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), ["age", "income"]),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                    ]
                ),
            ),
            ("estimator", LogisticRegression()),
        ]
    ).fit(frame, target)
    card = ModelCard(
        pipeline="churn",
        version=3,
        task="classification",
        numeric=("age", "income"),
        categorical=("plan",),
        classes=tuple(model.classes_.tolist()),
        sha256="0" * 64,
    )
    return Fitted(model=model, card=card, frame=frame)


@pytest.fixture(scope="session")
def regressor() -> Fitted:
    """A linear regression on the numeric features only."""
    frame = _frame()[["age", "income"]]
    model = Pipeline([("scale", StandardScaler()), ("estimator", LinearRegression())])
    model.fit(frame, frame["age"] * 2 + 1)
    card = ModelCard(
        pipeline="price", version=1, task="regression", numeric=("age", "income"), sha256="0" * 64
    )
    return Fitted(model=model, card=card, frame=frame)
