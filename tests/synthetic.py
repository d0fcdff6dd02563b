"""A synthetic churn-like dataset of any size, written fast enough to test and bench at millions of rows.

12 numeric features (2 % missing in one), 2 categoricals, an id column the spec excludes, and a
binary target drawn from a logistic model of the features, so a fit has something to find.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from shared.pipeline_spec import PipelineSpec

NUMERIC = tuple(f"x{i:02d}" for i in range(12))
REGIONS = ("north", "south", "east", "west", "centre")
PLANS = ("basic", "plus", "pro", "family")


def synthetic_table(rows: int, *, seed: int = 0) -> pa.Table:
    """``rows`` rows of the dataset as an Arrow table."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, len(NUMERIC))).round(5)
    region = rng.integers(0, len(REGIONS), size=rows)
    plan = rng.integers(0, len(PLANS), size=rows)
    logit = numbers[:, :6] @ np.array([1.2, -0.8, 0.5, 0.3, -0.4, 0.9]) + 0.3 * (plan - 1.5)
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    columns: dict[str, pa.Array] = {"customer_id": pa.array(np.arange(rows, dtype=np.int64) + seed * rows)}
    missing = rng.random(rows) < 0.02
    for index, name in enumerate(NUMERIC):
        values = numbers[:, index]
        columns[name] = pa.array(values, mask=missing if index == 3 else None)
    columns["region"] = pa.DictionaryArray.from_arrays(region.astype(np.int32), REGIONS).cast(pa.string())
    columns["plan"] = pa.DictionaryArray.from_arrays(plan.astype(np.int32), PLANS).cast(pa.string())
    columns["churn"] = pa.array(target)
    return pa.table(columns)


def synthetic_csv(rows: int, *, seed: int = 0) -> bytes:
    """The dataset as CSV bytes (Arrow's writer: a second for a million rows)."""
    sink = io.BytesIO()
    pa_csv.write_csv(synthetic_table(rows, seed=seed), sink)
    return sink.getvalue()


def synthetic_spec(name: str, *, folds: int = 5, **fields: object) -> PipelineSpec:
    """Logistic regression on the features with the spec's defaults, automatic approval."""
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": "churn",
            "task": "classification",
            "features": {"exclude": ["customer_id"]},
            "estimator": {
                "path": "sklearn.linear_model.LogisticRegression",
                "search": {"folds": folds},
            },
            "approval": "auto",
            **fields,
        }
    )
