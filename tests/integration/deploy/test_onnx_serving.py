"""Compiled inference end to end: a version the deploy service proves equal serves through ONNX Runtime.

A training-shaped pipeline (imputer, scaler, logistic regression, as ``services.train.fitting``
builds it) is approved; the deploy service converts it, proves it on the test split, and the
endpoint's workers answer through ONNX Runtime with scikit-learn's labels. ``ModelDeployed`` and
``/v1/monitoring/performance`` say so.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.train.fitting import build_pipeline
from shared.clients.serving import PredictionClient, PredictionError
from shared.events import ModelDeployed
from tests.integration.deploy.conftest import DeployStack
from tests.integration.deploy.fixtures import (
    TARGET,
    approval,
    dataset,
    model_artifact,
    pipeline_spec,
    publish,
    store_training_outputs,
)

pytestmark = pytest.mark.infra


async def test_a_proven_version_answers_through_onnx_runtime_like_scikit_learn(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    name = f"onnx-{uuid.uuid4().hex[:8]}"
    data = dataset()
    spec = pipeline_spec(name)
    model = build_pipeline(spec, numeric=data.features, categorical=[])
    model.set_params(estimator__max_iter=2000).fit(data.train[data.features], data.train[TARGET])
    published = store_training_outputs(
        deploy_stack.store,
        bucket=deploy_stack.settings.artifacts_bucket,
        spec=spec,
        data=data,
        artifact=model_artifact(model),
        version=1,
    )
    await publish(kafka_producer, approval(published, version=1))
    (deployed,) = await deploy_stack.collector.wait_until(ModelDeployed, pipeline=name, timeout=120)
    assert deployed.runtime is not None and deployed.runtime.name == "onnxruntime", deployed.runtime
    assert deployed.runtime.reason.startswith(f"proven equal on all {len(data.test)} test-split rows")

    rows = data.rows(data.test)
    with PredictionClient(deployed.endpoint_url) as client:
        response = await asyncio.to_thread(client.predict, rows)
        single = await asyncio.to_thread(client.predict, {"patient_id": "p-1", **rows[0]})
        with pytest.raises(PredictionError) as refused:
            await asyncio.to_thread(client.predict, {k: v for k, v in rows[0].items() if k != "mean radius"})
    assert refused.value.status_code == 400 and "missing features" in str(refused.value.detail)
    expected = model.predict(data.test[data.features]).tolist()
    probabilities = model.predict_proba(data.test[data.features])
    assert [p.prediction for p in response.predictions] == expected
    assert [p.probabilities for p in response.predictions] == [
        pytest.approx({"0": row[0], "1": row[1]}, abs=1e-6) for row in probabilities
    ]
    assert single.predictions[0].prediction == expected[0]

    async with httpx.AsyncClient(base_url=deployed.endpoint_url) as http:
        performance = (await http.get("/v1/monitoring/performance")).json()
    assert performance["runtime"]["name"] == "onnxruntime"
    assert performance["runtime"]["onnx_sha256"] and performance["runtime"]["rows_checked"] == len(data.test)
