"""Many pipelines from the same warm workers: one port, each pipeline at its own path, models loaded
on first use and the least recently used unloaded under the budget; real processes, HTTP, Kafka, MinIO.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.deploy.settings import DeploySettings
from shared.clients.serving import PredictionClient, PredictionError
from shared.events import ModelApproved, ModelDeployed
from shared.pipeline_spec import PipelineSpec
from tests.integration.deploy.conftest import DeployStack
from tests.integration.deploy.fixtures import (
    TARGET,
    approval,
    dataset,
    fit_model,
    model_artifact,
    publish,
    store_training_outputs,
)
from tests.integration.processes import free_port

pytestmark = pytest.mark.infra

PIPELINES = 10
# Each small model is estimated at about 2 MB: a 16 MB budget holds about seven per worker.
BUDGET_MB = 16


@pytest.fixture(scope="module")
def deploy_settings(deploy_settings: DeploySettings) -> DeploySettings:
    """Two shared workers on a port of their own, with a budget small enough to unload models."""
    return deploy_settings.model_copy(
        update={
            "serving_pool_port": free_port(),
            "serving_pool_budget_mb": BUDGET_MB,
            "serving_workers": 2,
        }
    )


def _spec(name: str, workers: str) -> PipelineSpec:
    return PipelineSpec.from_mapping(
        {"name": name, "target": TARGET, "task": "classification", "deployment": {"workers": workers}}
    )


async def _approve(
    stack: DeployStack, producer: AIOKafkaProducer, name: str, *, version: int = 1, workers: str = "shared",
    c: float = 1.0,
) -> ModelApproved:  # fmt: skip
    data = dataset()
    published = await asyncio.to_thread(
        store_training_outputs,
        stack.store,
        bucket=stack.settings.artifacts_bucket,
        spec=_spec(name, workers),
        data=data,
        artifact=model_artifact(fit_model(data, c=c)),
        version=version,
    )
    event = approval(published, version=version)
    await publish(producer, event)
    return event


@pytest.fixture(scope="module")
async def shared(deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer) -> dict[str, str]:
    """Ten pipelines on the shared workers: each one's endpoint URL."""
    names = [f"sh-{uuid.uuid4().hex[:6]}-{n}" for n in range(PIPELINES)]
    for name in names:
        await _approve(deploy_stack, kafka_producer, name)
    urls = {}
    for name in names:
        [deployed] = await deploy_stack.collector.wait_until(ModelDeployed, pipeline=name, timeout=120)
        urls[name] = deployed.endpoint_url
    return urls


def _predict(url: str, row: dict[str, Any]) -> int:
    with PredictionClient(url, timeout=30) as client:
        return client.predict(row).version


async def test_every_pipeline_answers_at_its_own_path_on_one_port(
    shared: dict[str, str], deploy_stack: DeployStack
) -> None:
    data = dataset()
    rows = data.rows(data.test)
    pool_port = deploy_stack.settings.serving_pool_port
    assert all(url.endswith(f":{pool_port}/pipelines/{name}") for name, url in shared.items())
    for _ in range(2):  # every pipeline twice: each worker loads what it is asked for
        for name, url in shared.items():
            with PredictionClient(url, timeout=30) as client:
                answer = await asyncio.to_thread(client.predict, rows[:3])
            assert (answer.pipeline, answer.version, len(answer.predictions)) == (name, 1, 3)
            expected = fit_model(data).predict(data.test[data.features][:3]).tolist()
            assert [p.prediction for p in answer.predictions] == expected

    async with httpx.AsyncClient(base_url=deploy_stack.service.url) as control:
        workers = (await control.get("/v1/shared-workers")).json()
    assert len(workers) == 2
    for worker in workers:
        assert len(worker["assigned"]) == PIPELINES
        assert 1 <= len(worker["loaded"]) <= 8  # the budget holds about seven small models
    assert sum(worker["unloads"] for worker in workers) > 0, workers


async def test_feedback_reaches_the_worker_that_predicted_and_bad_requests_are_refused(
    shared: dict[str, str],
) -> None:
    data = dataset()
    name, url = next(iter(shared.items()))
    with PredictionClient(url, timeout=30) as client:
        predicted = [client.predict(row) for row in data.rows(data.test)[:20]]
        results = [client.feedback(p.predictions[0].prediction_id, int(actual))
                   for p, actual in zip(predicted, data.test[TARGET][:20], strict=True)]  # fmt: skip
        assert {r.version for r in results} == {1} and sum(bool(r.correct) for r in results) >= 18
        with pytest.raises(PredictionError) as missing:
            client.predict({"mean radius": 1.0})
        assert missing.value.status_code == 400 and "missing features" in str(missing.value)
        with pytest.raises(PredictionError) as unknown:
            client.feedback("w1-0000", 1)
        assert unknown.value.status_code == 404
    base = url.rsplit("/pipelines/", 1)[0]
    async with httpx.AsyncClient(base_url=base) as http:
        absent = await http.post("/pipelines/nobody/v1/predict", json=data.rows(data.test)[0])
        assert absent.status_code == 404 and absent.json()["error"] == "NotFound"
        not_rows = await http.post(f"/pipelines/{name}/v1/predict", json=[1, 2])
        assert not_rows.status_code == 400
        pickle = await http.post(
            f"/pipelines/{name}/v1/predict",
            content=b"\x80\x04",
            headers={"content-type": "application/pickle"},
        )
        assert pickle.status_code == 415


async def test_a_new_version_is_swapped_in_under_load_and_a_dedicated_pipeline_keeps_its_port(
    shared: dict[str, str], deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data = dataset()
    name, url = next(iter(shared.items()))
    answers: list[int | str] = []
    stop = asyncio.Event()

    async def stream() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                answer = await http.post(f"{url}/v1/predict", json=data.rows(data.test)[len(answers) % 50])
                answers.append(answer.json()["version"] if answer.status_code == 200 else answer.status_code)

    running = asyncio.create_task(stream())
    await _approve(deploy_stack, kafka_producer, name, version=2, c=0.1)
    await deploy_stack.collector.wait_until(
        ModelDeployed, pipeline=name, where=lambda e: e.version == 2, timeout=120
    )
    seen = len(answers)
    for _ in range(300):  # twenty more answers after the swap was announced
        if len(answers) >= seen + 20:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await running
    assert len(answers) >= seen + 20, f"{len(answers) - seen} answers in 30 s after version 2 was deployed"
    assert set(answers) == {1, 2} and answers[-1] == 2, set(answers)  # no failed request

    dedicated = f"own-{uuid.uuid4().hex[:6]}"
    await _approve(deploy_stack, kafka_producer, dedicated, workers="dedicated")
    [deployed] = await deploy_stack.collector.wait_until(ModelDeployed, pipeline=dedicated, timeout=120)
    assert "/pipelines/" not in deployed.endpoint_url
    assert await asyncio.to_thread(_predict, deployed.endpoint_url, data.rows(data.test)[0]) == 1


async def test_a_killed_shared_worker_is_started_again_and_serves_every_pipeline(
    shared: dict[str, str], deploy_stack: DeployStack
) -> None:
    data = dataset()
    row = data.rows(data.test)[0]
    workers = deploy_stack.service.recorded("endpoint-_shared-w")
    for pid in workers.values():
        os.kill(pid, signal.SIGKILL)
    # Requests wait in the shared socket's backlog while the workers are started again.
    versions = await asyncio.gather(*(asyncio.to_thread(_predict, url, row) for url in shared.values()))
    assert set(versions) <= {1, 2} and len(versions) == PIPELINES
    for _ in range(300):  # both workers are started again, as new processes
        again = deploy_stack.service.recorded("endpoint-_shared-w")
        if set(again) == set(workers) and not set(again.values()) & set(workers.values()):
            break
        await asyncio.sleep(0.1)
    assert set(again) == set(workers) and not set(again.values()) & set(workers.values()), again
