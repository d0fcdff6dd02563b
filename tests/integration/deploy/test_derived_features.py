"""Derived columns travel inside the model: the real deploy path answers as the fitted pipeline does.

A model is fitted by the train service's own code with derived columns (arithmetic, a log, a
date part, a text category from a condition, a column name with spaces) plus a log transform and
quantile bins; its skops artifact is approved and served by the deploy service. Requests carry only
the raw columns; the endpoint and a batch job over a CSV must give what the pipeline gives in-process.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from services.train.fitting import fit_with_search
from shared.clients.serving import PredictionClient
from shared.events import BatchPredictionCompleted, BatchPredictionRequested, ModelDeployed
from shared.pipeline_spec import PipelineSpec
from shared.uris import ObjectLocation
from tests.integration.deploy.conftest import DeployStack
from tests.integration.deploy.fixtures import (
    TARGET,
    Dataset,
    approval,
    model_artifact,
    publish,
    store_training_outputs,
)

pytestmark = pytest.mark.infra

NUMERIC = ["mean radius", "mean texture", "mean area", "worst concavity"]
CATEGORICAL = ["clinic", "visit"]
DERIVED = [
    {"name": "area_per_radius", "expr": "col('mean area') / col('mean radius') ** 2"},
    {"name": "texture_log", "expr": "log(col('mean texture'))"},
    {"name": "visit_month", "expr": "month(visit)"},
    {"name": "weekend", "expr": "weekday(visit) >= 5"},
    {
        "name": "size",
        "expr": "where(col('mean area') > 700, 'large', 'small') if clinic == 'north' else 'any'",
    },
]


def _data() -> Dataset:
    frame = load_breast_cancer(as_frame=True).frame[[*NUMERIC, TARGET]]
    rows = np.arange(len(frame))
    frame["clinic"] = np.where(rows % 3 == 0, "north", "south")
    frame["visit"] = (pd.Timestamp("2025-01-01") + pd.to_timedelta(rows % 200, unit="D")).strftime("%Y-%m-%d")
    train, test = train_test_split(frame, test_size=0.25, random_state=7, stratify=frame[TARGET])
    return Dataset(
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        features=[*NUMERIC, *CATEGORICAL],
    )


def _spec(name: str) -> PipelineSpec:
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": TARGET,
            "task": "classification",
            "features": {"numeric": NUMERIC, "categorical": CATEGORICAL, "derived": DERIVED},
            "preprocessing": {"numeric": {"log": ["worst concavity"], "quantile_bins": 5}},
            "estimator": {"path": "sklearn.linear_model.LogisticRegression", "search": {"folds": 3}},
        }
    )


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {name: (float(row[name]) if name in NUMERIC else str(row[name])) for name in [*NUMERIC, *CATEGORICAL]}
        for _, row in frame.iterrows()
    ]


async def test_endpoint_and_batch_compute_derived_columns_as_training_did(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    name, data = f"derived-{uuid.uuid4().hex[:8]}", _data()
    spec = _spec(name)
    fit = fit_with_search(spec, data.train)
    assert fit.features.numeric == tuple(NUMERIC) and fit.features.categorical == tuple(CATEGORICAL)
    published = store_training_outputs(
        deploy_stack.store,
        bucket=deploy_stack.settings.artifacts_bucket,
        spec=spec,
        data=data,
        artifact=model_artifact(fit.pipeline),
        version=1,
        categorical=CATEGORICAL,
    )
    await publish(kafka_producer, approval(published, version=1))
    deployed = await deploy_stack.collector.wait_until(ModelDeployed, pipeline=name, timeout=120)

    raw = data.test[[*NUMERIC, *CATEGORICAL]]
    expected = fit.pipeline.predict(raw).tolist()
    probabilities = fit.pipeline.predict_proba(raw)
    with PredictionClient(deployed[0].endpoint_url) as client:
        answered = await asyncio.to_thread(client.predict, _rows(data.test))
        # The derived columns are the model's business: one a caller sends is left out, not used.
        sent = await asyncio.to_thread(client.predict, {**_rows(data.test)[0], "visit_month": 99.0})
    assert sent.predictions[0].probabilities == answered.predictions[0].probabilities
    assert [p.prediction for p in answered.predictions] == expected
    assert [p.probabilities for p in answered.predictions] == [
        pytest.approx({"0": row[0], "1": row[1]}, rel=1e-9) for row in probabilities
    ]

    # Batch scoring reads a CSV, where dates are text and numbers are parsed again.
    csv = ObjectLocation(deploy_stack.settings.landing_bucket, f"{name}/batch.csv")
    deploy_stack.store.put(csv, data.test.to_csv(index=False).encode())
    request = BatchPredictionRequested.first(producer="test", pipeline=name, input_uri=csv.uri, version=None)
    await publish(kafka_producer, request)
    done = await deploy_stack.collector.wait_until(BatchPredictionCompleted, pipeline=name, timeout=90)
    output = pd.read_parquet(
        io.BytesIO(deploy_stack.store.read(deploy_stack.store.locate(done[0].output_uri)))
    )
    assert output["prediction"].tolist() == expected
    np.testing.assert_allclose(output["probability_1"].to_numpy(), probabilities[:, 1], rtol=1e-9)
