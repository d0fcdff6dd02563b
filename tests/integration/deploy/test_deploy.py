"""The deploy service end to end: real BentoML server processes, real HTTP, Kafka and MinIO.

The tests share one deploy service and one pipeline and run in file order: v1 is deployed first,
bad versions are refused around it, v4 rolls out under load and is rolled back, then batch jobs,
load, drift and a hard kill of the service follow.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import pickle
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from aiokafka import AIOKafkaProducer
from sklearn.pipeline import Pipeline

from services.deploy.processes import tagged
from shared.clients.serving import PredictionClient, PredictionError
from shared.events import (
    BatchPredictionCompleted,
    BatchPredictionFailed,
    BatchPredictionRequested,
    DeploymentFailed,
    DriftChecked,
    DriftDetected,
    ModelApproved,
    ModelDeployed,
    PredictionsCaptured,
    RetrainRequested,
)
from shared.storage import minio_client
from shared.uris import ObjectLocation
from tests.integration.deploy.conftest import APPROVER_TOKEN, OPERATOR_TOKEN, DeployStack
from tests.integration.deploy.fixtures import (
    DRIFT_THRESHOLD,
    DRIFT_WINDOW,
    TARGET,
    Dataset,
    Published,
    approval,
    dataset,
    fit_model,
    model_artifact,
    pipeline_spec,
    publish,
    store_training_outputs,
)
from tests.integration.deploy.service_process import wait_gone

pytestmark = pytest.mark.infra

APPROVER = {"Authorization": f"Bearer {APPROVER_TOKEN}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class Live:
    """The pipeline these tests deploy, and what they learned along the way."""

    pipeline: str
    data: Dataset
    models: dict[int, Pipeline]
    approvals: dict[int, ModelApproved]
    endpoint: str
    figures: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def live(deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer) -> Live:
    """Version 1 of a fresh pipeline, approved and deployed."""
    name = f"bc-{uuid.uuid4().hex[:8]}"
    data = dataset()
    model = fit_model(data)
    published = _store(deploy_stack, name, data, model_artifact(model), version=1)
    event = approval(published, version=1)
    started = time.monotonic()
    await publish(kafka_producer, event)
    deployed = await deploy_stack.collector.wait_until(ModelDeployed, pipeline=name, timeout=120)
    live = Live(name, data, {1: model}, {1: event}, endpoint=deployed[0].endpoint_url)
    live.figures["first_deploy_s"] = round(time.monotonic() - started, 1)
    return live


def _store(stack: DeployStack, name: str, data: Dataset, artifact: bytes, *, version: int) -> Published:
    spec = pipeline_spec(name)
    bucket = stack.settings.artifacts_bucket
    return store_training_outputs(
        stack.store, bucket=bucket, spec=spec, data=data, artifact=artifact, version=version
    )


async def test_approved_version_answers_like_the_model(live: Live, deploy_stack: DeployStack) -> None:
    deployed = deploy_stack.collector.of(ModelDeployed, pipeline=live.pipeline)[0]
    assert (deployed.version, deployed.environment) == (1, "production")
    assert deployed.causation_id == live.approvals[1].event_id
    data = live.data
    with PredictionClient(live.endpoint) as client:
        response = await asyncio.to_thread(client.predict, data.rows(data.test))
        single = await asyncio.to_thread(client.predict, data.rows(data.test)[0])
    expected = live.models[1].predict(data.test[data.features]).tolist()
    probabilities = live.models[1].predict_proba(data.test[data.features])
    assert response.version == 1 and response.pipeline == live.pipeline
    assert [p.prediction for p in response.predictions] == expected
    assert [p.probabilities for p in response.predictions] == [
        pytest.approx({"0": row[0], "1": row[1]}) for row in probabilities
    ]
    assert len({p.prediction_id for p in response.predictions}) == len(data.test)
    assert len(single.predictions) == 1 and single.predictions[0].prediction == expected[0]


async def test_missing_features_are_refused_and_extra_columns_left_out(live: Live) -> None:
    row = live.data.rows(live.data.test)[0]
    extra = {"patient_id": "p-17", **row, "seen_at": "2026-12-02T10:00:00Z"}
    missing = {k: v for k, v in row.items() if k != "mean radius"}
    with PredictionClient(live.endpoint) as client:
        plain, whole = (
            await asyncio.to_thread(client.predict, row),
            await asyncio.to_thread(client.predict, extra),
        )
        assert whole.predictions[0].probabilities == plain.predictions[0].probabilities
        for bad, words in (
            (missing, "missing features"),
            ({**row, "mean area": "x"}, "number"),
        ):
            with pytest.raises(PredictionError) as refused:
                await asyncio.to_thread(client.predict, bad)
            assert refused.value.status_code == 400 and words in str(refused.value.detail)


async def test_a_redelivered_approval_restarts_nothing(
    live: Live, deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    servers_before = deploy_stack.service.recorded()
    await publish(kafka_producer, live.approvals[1])  # the very same event again
    deployed = await deploy_stack.collector.wait_until(
        ModelDeployed, pipeline=live.pipeline, where=lambda e: e.version == 1, count=2
    )
    assert deployed[0].event_id == deployed[1].event_id
    assert deploy_stack.service.recorded() == servers_before


async def test_a_tampered_artifact_fails_and_the_old_version_keeps_serving(
    live: Live, deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    artifact = model_artifact(fit_model(live.data, c=0.5))
    published = _store(deploy_stack, live.pipeline, live.data, artifact, version=2)
    location = deploy_stack.store.locate(published.model.uri)
    tampered = artifact[:-64] + b"\0" * 64
    minio_client(deploy_stack.settings).put_object(
        location.bucket, location.key, io.BytesIO(tampered), len(tampered)
    )
    await publish(kafka_producer, approval(published, version=2))
    failed = await deploy_stack.collector.wait_until(
        DeploymentFailed, pipeline=live.pipeline, where=_version(2)
    )
    assert "IntegrityError" in failed[0].reason and "modified" in failed[0].reason
    assert _predict_version(live) == 1


class _Exploit:
    """Unpickling this runs a shell command: what a malicious "model" looks like."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.sentinel}",))


async def test_a_pickle_is_never_loaded_nor_accepted(
    live: Live, deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(sentinel))
    published = _store(deploy_stack, live.pipeline, live.data, payload, version=3)  # its digest matches
    await publish(kafka_producer, approval(published, version=3))
    failed = await deploy_stack.collector.wait_until(
        DeploymentFailed, pipeline=live.pipeline, where=_version(3)
    )
    assert "UntrustedModelError" in failed[0].reason
    assert not sentinel.exists()
    async with httpx.AsyncClient(base_url=live.endpoint) as client:
        for media_type in (
            "application/vnd.bentoml+pickle",
            "application/python-pickle",
            "application/x-pickle",
        ):
            answer = await client.post("/v1/predict", content=payload, headers={"Content-Type": media_type})
            assert answer.status_code == 415, answer.text
    assert not sentinel.exists()
    assert _predict_version(live) == 1


@dataclass
class Stream:
    """Clients sending a steady stream of requests, recording each answer's status and version."""

    url: str
    rows: list[dict[str, Any]]
    clients: int = 4
    answers: list[list[tuple[int, int | None]]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.answers = [[] for _ in range(self.clients)]
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def flat(self) -> list[tuple[int, int | None]]:
        return [answer for answers in self.answers for answer in answers]

    def count(self, version: int) -> int:
        return sum(1 for status, v in self.flat if status == 200 and v == version)

    async def _run(self, index: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0) as client:
            sent = index * 97
            while not self._stop.is_set():
                sent += 1
                try:
                    answer = await client.post("/v1/predict", json=self.rows[sent % len(self.rows)])
                    version = answer.json().get("version") if answer.status_code == 200 else None
                    self.answers[index].append((answer.status_code, version))
                except httpx.HTTPError:
                    self.answers[index].append((0, None))


async def _until(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_new_version_rolls_out_under_load_and_rolls_back(
    live: Live, deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    model = fit_model(live.data, c=0.01)
    published = _store(deploy_stack, live.pipeline, live.data, model_artifact(model), version=4)
    live.models[4] = model
    live.approvals[4] = approval(published, version=4)
    # Rows of the training data, so that this traffic is no drift.
    stream = Stream(live.endpoint, live.data.rows(live.data.train))
    stream.start()
    await _until(lambda: len(stream.flat) >= 20, timeout=30, what="the stream to start")
    await publish(kafka_producer, live.approvals[4])
    await deploy_stack.collector.wait_until(
        ModelDeployed, pipeline=live.pipeline, where=_version(4), timeout=120
    )
    await _until(lambda: stream.count(4) >= 100, timeout=30, what="answers from version 4")

    async with httpx.AsyncClient(base_url=deploy_stack.service.url, timeout=120) as control:
        assert (await control.post(f"/v1/deployments/{live.pipeline}/rollback")).status_code == 401
        not_operator = await control.post(f"/v1/deployments/{live.pipeline}/rollback", headers=APPROVER)
        assert not_operator.status_code == 403, not_operator.text  # rollback is the operator's
        rolled = await control.post(
            f"/v1/deployments/{live.pipeline}/rollback", params={"reason": "test"}, headers=OPERATOR
        )
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["version"] == 1
        await _until(lambda: stream.flat[-1][1] == 1, timeout=30, what="answers from version 1 again")
        await stream.stop()
        again = await control.post(f"/v1/deployments/{live.pipeline}/rollback", headers=OPERATOR)
        assert again.status_code == 409
        listed = (await control.get("/v1/deployments")).json()

    statuses = Counter(status for status, _ in stream.flat)
    live.figures["rollout"] = {"sent": len(stream.flat), "statuses": dict(statuses)}
    print(f"\nrollout + rollback under load: {len(stream.flat)} requests, statuses {dict(statuses)}")
    assert set(statuses) == {200}, statuses
    for answers in stream.answers:  # each client moved 1 → 4 → 1, never back and forth
        versions = [v for _, v in answers]
        switches = [b for a, b in itertools.pairwise(versions) if a != b]
        assert switches in ([4, 1], [1], [4]), switches
    mine = next(d for d in listed if d["pipeline"] == live.pipeline)
    assert (mine["active_version"], mine["serving_version"], mine["previous_version"]) == (1, 1, None)
    assert mine["versions"] == [1, 4] and mine["endpoint_url"] == live.endpoint
    rolled_back = await deploy_stack.collector.wait_until(
        ModelDeployed, pipeline=live.pipeline, where=lambda e: e.version == 1, count=3
    )
    assert rolled_back[-1].causation_id == live.approvals[1].event_id


async def test_batch_predictions_match_the_endpoint(
    live: Live, deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, store, settings = live.data, deploy_stack.store, deploy_stack.settings
    frame = data.test.copy()
    frame.insert(0, "patient_id", [f"p-{i}" for i in range(len(frame))])
    csv = ObjectLocation(settings.landing_bucket, f"{live.pipeline}/batch.csv")
    store.put(csv, frame.to_csv(index=False).encode())
    parquet = ObjectLocation(settings.artifacts_bucket, f"incoming/{live.pipeline}/batch.parquet")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.put(parquet, buffer.getvalue())
    serving = _request(live, csv.uri)  # version None: the one serving (1, after the rollback)
    pinned = _request(live, parquet.uri, version=4)
    for request in (serving, pinned):
        await publish(kafka_producer, request)
    done = await deploy_stack.collector.wait_until(
        BatchPredictionCompleted, pipeline=live.pipeline, count=2, timeout=90
    )
    by_cause = {event.causation_id: event for event in done}

    with PredictionClient(live.endpoint) as client:
        endpoint = await asyncio.to_thread(client.predict, data.rows(frame))
    completed = by_cause[serving.event_id]
    output = pd.read_parquet(io.BytesIO(store.read(store.locate(completed.output_uri))))
    assert completed.version == 1 and completed.rows == len(frame) == len(output)
    assert output["patient_id"].tolist() == frame["patient_id"].tolist()
    assert output[TARGET].tolist() == frame[TARGET].tolist()
    assert output["prediction"].tolist() == [p.prediction for p in endpoint.predictions]
    probabilities = [(p.probabilities or {})["1"] for p in endpoint.predictions]
    np.testing.assert_allclose(output["probability_1"].to_numpy(), np.asarray(probabilities))

    pinned_done = by_cause[pinned.event_id]
    pinned_output = pd.read_parquet(io.BytesIO(store.read(store.locate(pinned_done.output_uri))))
    assert pinned_done.version == 4 and len(pinned_output) == len(frame)
    assert pinned_output["prediction"].tolist() == live.models[4].predict(frame[data.features]).tolist()


async def test_batch_inputs_outside_the_buckets_are_refused(
    live: Live, deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    bad = {
        "file:///etc/passwd": "scheme 'file'",
        "http://127.0.0.1:9000/conveyor-landing/x.csv": "scheme 'http'",
        "s3://some-other-bucket/x.csv": "outside the allowed locations",
        f"s3://{deploy_stack.settings.landing_bucket}/../secrets.csv": "'..'",
    }
    requests = {uri: _request(live, uri) for uri in bad}
    for request in requests.values():
        await publish(kafka_producer, request)
    failed = await deploy_stack.collector.wait_until(
        BatchPredictionFailed, pipeline=live.pipeline, count=len(bad), timeout=60
    )
    reasons = {event.input_uri: event.reason for event in failed}
    for uri, words in bad.items():
        assert "UnsafeUriError" in reasons[uri] and words in reasons[uri], reasons[uri]


async def test_32_concurrent_clients_get_no_errors_and_their_own_answers(live: Live) -> None:
    rows = live.data.rows(live.data.train)
    expected = live.models[1].predict(live.data.train[live.data.features]).tolist()
    per_client = 25
    before = await _model_calls(live)

    async def client_run(index: int) -> list[tuple[int, bool]]:
        answers = []
        async with httpx.AsyncClient(base_url=live.endpoint, timeout=60.0) as client:
            for i in range(per_client):
                row = (index * per_client + i) % len(rows)
                response = await client.post("/v1/predict", json=rows[row])
                correct = response.status_code == 200 and (
                    response.json()["predictions"][0]["prediction"] == expected[row]
                )
                answers.append((response.status_code, correct))
        return answers

    started = time.monotonic()
    answers = [answer for run in await asyncio.gather(*(client_run(i) for i in range(32))) for answer in run]
    elapsed = time.monotonic() - started
    statuses = Counter(status for status, _ in answers)
    calls = await _model_calls(live) - before
    live.figures["concurrency"] = {"requests": len(answers), "statuses": dict(statuses), "model_calls": calls}
    print(
        f"\n32 clients: {len(answers)} requests in {elapsed:.1f}s, {calls} model calls,"
        f" statuses {dict(statuses)}"
    )
    assert statuses == Counter({200: 32 * per_client})
    assert all(correct for _, correct in answers)  # batched with others, each row got its own answer
    assert 0 < calls < len(answers)  # concurrent requests shared model calls


async def _model_calls(live: Live) -> int:
    async with httpx.AsyncClient(base_url=live.endpoint) as client:
        response = await client.get("/v1/monitoring/performance")
    response.raise_for_status()
    return int(response.json()["model_calls"])


async def test_single_client_latency(live: Live) -> None:
    rows = live.data.rows(live.data.train)
    timings = []
    async with httpx.AsyncClient(base_url=live.endpoint) as client:
        for i in range(300):
            started = time.perf_counter()
            assert (await client.post("/v1/predict", json=rows[i % len(rows)])).status_code == 200
            timings.append(time.perf_counter() - started)
    p50, p99 = (float(np.percentile(timings, q)) * 1000 for q in (50, 99))
    live.figures["latency_ms"] = {"p50": round(p50, 2), "p99": round(p99, 2)}
    print(f"\n/v1/predict single client: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert p50 < 100


async def test_feedback_gives_live_accuracy(live: Live) -> None:
    data = live.data
    truth = data.test[TARGET].tolist()[:40]
    with PredictionClient(live.endpoint) as client:
        response = await asyncio.to_thread(client.predict, data.rows(data.test)[:40])
        results = [
            await asyncio.to_thread(client.feedback, p.prediction_id, actual)
            for p, actual in zip(response.predictions, truth, strict=True)
        ]
        figures = await asyncio.to_thread(client.performance)
        with pytest.raises(PredictionError) as unknown:
            await asyncio.to_thread(client.feedback, "no-such-prediction", 1)
    assert unknown.value.status_code == 404
    correct = sum(p.prediction == t for p, t in zip(response.predictions, truth, strict=True))
    assert [r.correct for r in results] == [
        p.prediction == t for p, t in zip(response.predictions, truth, strict=True)
    ]
    assert figures["feedback"] >= 40 and figures["accuracy"] == pytest.approx(correct / 40, abs=0.2)
    metrics = httpx.get(f"{live.endpoint}/metrics").text
    assert "conveyor_live_accuracy" in metrics and "conveyor_feedback_total" in metrics


def _shifted_rows(data: Dataset, windows: int) -> list[dict[str, Any]]:
    """Training rows scaled by 3: every feature far outside what the model was trained on."""
    shifted = data.train[data.features].head(DRIFT_WINDOW) * 3.0
    return data.rows(shifted) * windows


async def _send(live: Live, rows: list[dict[str, Any]]) -> None:
    with PredictionClient(live.endpoint) as client:
        for start in range(0, len(rows), 100):
            await asyncio.to_thread(client.predict, rows[start : start + 100])


async def test_drift_is_detected_and_retraining_requested_once(live: Live, deploy_stack: DeployStack) -> None:
    collector = deploy_stack.collector
    await collector.wait_until(PredictionsCaptured, pipeline=live.pipeline)
    checked_before = await collector.wait_until(DriftChecked, pipeline=live.pipeline, count=3)
    assert collector.of(DriftDetected, pipeline=live.pipeline) == []  # the traffic so far was no drift
    assert all(max(c.psi.values()) < DRIFT_THRESHOLD for c in checked_before)

    await _send(live, _shifted_rows(live.data, windows=4))
    every_feature = len(live.data.features)
    detected = await collector.wait_until(  # three windows hold shifted rows only
        DriftDetected,
        pipeline=live.pipeline,
        where=lambda d: len(d.drifted_features) == every_feature,
        count=3,
    )
    retrain = collector.of(RetrainRequested, pipeline=live.pipeline)
    checked = collector.of(DriftChecked, pipeline=live.pipeline)
    assert len(retrain) == 1, retrain
    assert retrain[0].drift_report_uri is not None and "drift in" in retrain[0].reason
    assert all(d.threshold == DRIFT_THRESHOLD for d in detected)
    assert all(c.window_size == DRIFT_WINDOW for c in checked)
    report = deploy_stack.store.read(deploy_stack.store.locate(retrain[0].drift_report_uri))
    assert b"psi" in report


async def test_a_crashed_worker_is_started_again_while_requests_wait(
    live: Live, deploy_stack: DeployStack
) -> None:
    service = deploy_stack.service
    [(worker_name, worker)] = service.recorded("endpoint-").items()
    os.kill(worker, signal.SIGKILL)  # the server's only worker
    started = time.monotonic()
    # Sent at once: it waits in the server's socket until the worker is back, rather than failing.
    with PredictionClient(live.endpoint, timeout=90.0) as client:
        answer = await asyncio.to_thread(client.predict, live.data.rows(live.data.test)[0])
    assert answer.version == 1
    live.figures["worker_back_s"] = round(time.monotonic() - started, 1)
    assert service.recorded("endpoint-")[worker_name] != worker  # the same worker (name, port), a new process


async def test_a_killed_service_leaves_no_orphans_and_comes_back(
    live: Live, deploy_stack: DeployStack
) -> None:
    service, collector = deploy_stack.service, deploy_stack.collector
    assert len(tagged(service.tag(), exact=False)) >= 1  # the endpoint's worker
    await service.kill()
    assert await wait_gone(service.tag(), timeout=30) == []  # told to stop by PR_SET_PDEATHSIG
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{live.endpoint}/v1/predict", json=live.data.rows(live.data.test)[0])

    started = time.monotonic()
    await service.start()
    live.figures["restart_s"] = round(time.monotonic() - started, 1)
    assert _predict_version(live) == 1  # what was serving (the rolled-back version), at the same URL

    detected_before = len(collector.of(DriftDetected, pipeline=live.pipeline))
    await _send(live, _shifted_rows(live.data, windows=2))
    await collector.wait_until(DriftDetected, pipeline=live.pipeline, count=detected_before + 2, timeout=60)
    assert len(collector.of(RetrainRequested, pipeline=live.pipeline)) == 1  # the cooldown survived
    print(f"\nfigures: {live.figures}")


def _version(version: int) -> Any:
    return lambda event: event.version == version


def _answers(live: Live) -> bool:
    try:
        _predict_version(live)
    except (PredictionError, httpx.TransportError):
        return False
    return True


def _predict_version(live: Live) -> int:
    with PredictionClient(live.endpoint) as client:
        return client.predict(live.data.rows(live.data.test)[0]).version


def _request(live: Live, uri: str, *, version: int | None = None) -> BatchPredictionRequested:
    return BatchPredictionRequested.first(
        producer="test", pipeline=live.pipeline, input_uri=uri, version=version
    )
