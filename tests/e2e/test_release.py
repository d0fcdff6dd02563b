"""From data arrival to a served model through all five services: manual approval, and a registry crash."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from shared.clients.events import publish_data_arrival
from shared.clients.serving import PredictionClient
from shared.events import (
    DatasetValidated,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelRejected,
)
from shared.pipeline_spec import PipelineSpec
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.infra


def breast_cancer(*, seed: int | None = None) -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    return frame if seed is None else frame.sample(frac=0.9, random_state=seed)


def apply(stack: Stack, name: str, *, approval: str, realtime: bool = True) -> PipelineSpec:
    spec = PipelineSpec.from_mapping(
        {
            "name": name,
            "target": "target",
            "task": "classification",
            "estimator": {"path": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
            "gates": [{"metric": "accuracy", "min": 0.85}],
            "approval": approval,
            "deployment": {"realtime": realtime},
        }
    )
    stack.specs.apply(spec)
    return spec


async def arrive(stack: Stack, name: str, frame: pd.DataFrame) -> ModelRegistered:
    arrival = await publish_data_arrival(
        stack.settings, pipeline=name, data=frame.to_csv(index=False).encode(), filename="bc.csv"
    )
    registered = await stack.watcher.wait_for(
        ModelRegistered, correlation_id=arrival.correlation_id, timeout=180
    )
    assert isinstance(registered, ModelRegistered)
    return registered


async def test_manual_approval_then_served_and_a_rejected_version_stays_out(
    stack: Stack, pipeline_name: str
) -> None:
    apply(stack, pipeline_name, approval="manual")
    registry = httpx.AsyncClient(base_url=stack.settings.registry_base_url)
    first = await arrive(stack, pipeline_name, breast_cancer())
    assert first.status == "PendingManualApproval" and first.version == 1
    await asyncio.sleep(0)  # nothing else is owed: the version waits for a person
    assert stack.watcher.events(ModelApproved, correlation_id=first.correlation_id) == []

    path = f"/v1/groups/{pipeline_name}/versions/1"
    assert (await registry.post(f"{path}/approve", json={"comment": "ship"})).status_code == 401
    approved = await registry.post(
        f"{path}/approve", json={"comment": "ship"}, headers=stack.approver_headers
    )
    assert approved.status_code == 200, approved.text
    deployed = await stack.watcher.wait_for(ModelDeployed, correlation_id=first.correlation_id, timeout=180)
    assert isinstance(deployed, ModelDeployed) and deployed.version == 1

    # The endpoint answers correct-shaped predictions for rows of the test split.
    validated = stack.watcher.events(DatasetValidated, correlation_id=first.correlation_id)[0]
    test_rows = pd.read_parquet(io.BytesIO(stack.store.get(validated.test)))
    rows = test_rows.drop(columns=["target"]).head(20).to_dict("records")
    with PredictionClient(deployed.endpoint_url) as client:
        response = client.predict(rows)
    assert response.version == 1 and len(response.predictions) == 20
    assert all(p.prediction in (0, 1) for p in response.predictions)
    assert all(abs(sum((p.probabilities or {}).values()) - 1) < 1e-6 for p in response.predictions)
    accuracy = sum(
        p.prediction == t for p, t in zip(response.predictions, test_rows["target"].head(20), strict=True)
    )
    assert accuracy >= 17

    # The README's curl form: one row as the JSON body.
    curl = subprocess.run(
        [
            "curl",
            "-s",
            "-X",
            "POST",
            f"{deployed.endpoint_url}/v1/predict",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(rows[0]),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(curl.stdout)["predictions"][0]["prediction"] == response.predictions[0].prediction
    pickled = httpx.post(
        f"{deployed.endpoint_url}/v1/predict",
        content=b"\x80\x04N.",
        headers={"content-type": "application/python-pickle"},
    )
    assert 400 <= pickled.status_code < 500

    second = await arrive(stack, pipeline_name, breast_cancer(seed=1))
    assert second.version == 2
    rejected = await registry.post(
        f"/v1/groups/{pipeline_name}/versions/2/reject",
        json={"comment": "not now"},
        headers=stack.approver_headers,
    )
    assert rejected.status_code == 200
    await stack.watcher.wait_for(ModelRejected, correlation_id=second.correlation_id)
    again = await registry.post(
        f"/v1/groups/{pipeline_name}/versions/2/approve", json={}, headers=stack.approver_headers
    )
    assert again.status_code == 409
    with PredictionClient(deployed.endpoint_url) as client:
        assert client.predict(rows[:1]).version == 1  # the rejected version was never deployed
    history = (await registry.get(f"/v1/groups/{pipeline_name}/history")).json()
    assert [(h["version"], h["until"]) for h in history] == [(1, None)]
    await registry.aclose()


async def test_registry_killed_mid_flow_loses_and_duplicates_nothing(
    stack: Stack, pipeline_name: str
) -> None:
    apply(stack, pipeline_name, approval="auto", realtime=False)
    arrivals = [
        await publish_data_arrival(
            stack.settings,
            pipeline=pipeline_name,
            data=breast_cancer(seed=seed).to_csv(index=False).encode(),
            filename=f"part-{seed}.csv",
        )
        for seed in range(6)
    ]
    registry = stack.processes["registry"]
    # Kill it as soon as the first candidate reaches it: the rest are in flight behind.
    await stack.watcher.wait_for(ModelEvaluated, correlation_id=arrivals[0].correlation_id, timeout=180)
    await asyncio.to_thread(registry.kill)
    await asyncio.to_thread(registry.start)

    for arrival in arrivals:
        await stack.watcher.wait_for(ModelRegistered, correlation_id=arrival.correlation_id, timeout=180)
    async with httpx.AsyncClient(base_url=stack.settings.registry_base_url) as client:
        versions = (await client.get(f"/v1/groups/{pipeline_name}/versions")).json()
    assert [v["version"] for v in versions] == [1, 2, 3, 4, 5, 6]
    assert len({v["run_id"] for v in versions}) == 6
    # Each was decided (approved, or rejected for not beating the champion); none left half-done.
    assert all(v["status"] in ("Approved", "Rejected") for v in versions), versions
    # Redelivered registrations repeat the same facts: each arrival got one version number.
    numbers = {
        arrival.correlation_id: {
            e.version for e in stack.watcher.events(ModelRegistered, correlation_id=arrival.correlation_id)
        }
        for arrival in arrivals
    }
    assert all(len(found) == 1 for found in numbers.values()), numbers


async def test_one_arrival_is_one_trace_from_the_sdk_to_the_first_prediction(
    stack: Stack, pipeline_name: str
) -> None:
    apply(stack, pipeline_name, approval="auto")
    data = breast_cancer()
    arrival = await publish_data_arrival(
        stack.settings, pipeline=pipeline_name, data=data.to_csv(index=False).encode(), filename="bc.csv"
    )
    deployed = await stack.watcher.wait_for(ModelDeployed, correlation_id=arrival.correlation_id, timeout=180)
    assert isinstance(deployed, ModelDeployed)
    row = {name: float(value) for name, value in data.drop(columns="target").iloc[0].items()}
    with PredictionClient(deployed.endpoint_url) as client:  # the version's first prediction
        assert (await asyncio.to_thread(client.predict, row)).version == deployed.version
    trace_file = stack.settings.trace_file
    assert trace_file is not None

    def services_in_trace() -> set[str]:
        spans = [json.loads(line) for line in trace_file.read_text().splitlines()]
        ours = [
            s for s in spans if s["attributes"].get("conveyor.correlation_id") == str(arrival.correlation_id)
        ]
        if not ours:
            return set()
        return {s["service"] for s in spans if s["trace_id"] == ours[0]["trace_id"]}

    services = ("sdk", "ingest", "train", "evaluate", "registry", "deploy", "serving")
    expected = {f"conveyor-{name}" for name in services}
    deadline = asyncio.get_running_loop().time() + 30
    while not expected <= services_in_trace():  # spans are exported in batches every few seconds
        assert asyncio.get_running_loop().time() < deadline, f"trace holds {sorted(services_in_trace())}"
        await asyncio.sleep(0.5)
