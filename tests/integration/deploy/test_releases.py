"""Gradual releases end to end: a deploy service process, real BentoML workers, real HTTP, Kafka and MinIO.

Each test releases version 2 of a pipeline of its own beside version 1 while clients send
predictions (and, where the test needs it, ground truth), and watches the release events.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from services.deploy.settings import DeploySettings
from shared.events import (
    ModelDeployed,
    PredictionsCaptured,
    ReleasePaused,
    ReleasePromoted,
    ReleaseResumed,
    ReleaseRolledBack,
    ReleaseStarted,
    ReleaseStepChecked,
)
from shared.pipeline_spec import PipelineSpec
from shared.release import STICKY_HEADER
from tests.integration.deploy.conftest import APPROVER_TOKEN, OPERATOR_TOKEN, DeployStack
from tests.integration.deploy.fixtures import (
    TARGET,
    Dataset,
    approval,
    dataset,
    fit_model,
    model_artifact,
    publish,
    store_training_outputs,
)
from tests.integration.deploy.service_process import wait_gone

pytestmark = pytest.mark.infra

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
APPROVER = {"Authorization": f"Bearer {APPROVER_TOKEN}"}
# Machines running these tests are shared and noisy: latency is not what these releases are judged on.
CALM_LATENCY = {"max_p99_ratio": 50.0, "min_p99_excess_ms": 1000.0}


@pytest.fixture(scope="module")
def deploy_settings(deploy_settings: DeploySettings) -> DeploySettings:
    """scikit-learn serves: a model without an imputer fails on a missing value, as it would live."""
    return deploy_settings.model_copy(update={"serving_onnx": False})


def _spec(name: str, release: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": TARGET,
            "task": "classification",
            "estimator": {"path": "sklearn.linear_model.LogisticRegression"},
            "deployment": {"release": release},
        }
    )


def _imputing(data: Dataset) -> Pipeline:
    """Version 1 of the error test: missing values are imputed."""
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    model = Pipeline(
        [
            ("preprocess", ColumnTransformer([("numeric", numeric, data.features)])),
            ("estimator", LogisticRegression(max_iter=2000)),
        ]
    )
    return model.fit(data.train[data.features], data.train[TARGET])


def _flipped(data: Dataset) -> Pipeline:
    """A model trained on inverted labels: sound offline on its own data, wrong on live ground truth."""
    model = fit_model(data)
    return model.fit(data.train[data.features], 1 - data.train[TARGET])


@dataclass
class Released:
    """A pipeline with version 1 serving and version 2 approved under a release strategy."""

    name: str
    endpoint: str
    approvals: dict[int, Any] = field(default_factory=dict)


async def _release(
    stack: DeployStack,
    producer: AIOKafkaProducer,
    *,
    release: dict[str, Any],
    models: tuple[Pipeline, Pipeline],
    before_candidate: Any = None,
) -> Released:
    """Serve version 1, then approve version 2 (whose spec declares ``release``)."""
    name = f"rel-{uuid.uuid4().hex[:8]}"
    bucket, data = stack.settings.artifacts_bucket, dataset()
    out = Released(name=name, endpoint="")
    for version, model in zip((1, 2), models, strict=True):
        published = store_training_outputs(
            stack.store,
            bucket=bucket,
            spec=_spec(name, release),
            data=data,
            artifact=model_artifact(model),
            version=version,
        )
        out.approvals[version] = approval(published, version=version)
    await publish(producer, out.approvals[1])
    [deployed] = await stack.collector.wait_until(ModelDeployed, pipeline=name, timeout=120)
    out.endpoint = deployed.endpoint_url
    if before_candidate is not None:
        await before_candidate(out)
    await publish(producer, out.approvals[2])
    return out


class Clients:
    """Callers sending predictions without pause (named, so sticky, if asked), and ground truth if asked."""

    def __init__(
        self,
        url: str,
        *,
        clients: int = 4,
        sticky: bool = False,
        feedback: bool = False,
        missing_every: int = 0,
    ) -> None:
        data = dataset()
        self._rows = data.rows(data.test)
        self._labels = [int(v) for v in data.test[TARGET]]
        self._url, self._clients, self._feedback, self._missing = url, clients, feedback, missing_every
        self._sticky = sticky
        self.answers: dict[int, list[tuple[int, int | None]]] = {i: [] for i in range(clients)}
        self.in_order: list[tuple[int, int | None]] = []  # every client's answers as they came
        self._sent_at: list[float] = []  # when each answer in in_order was asked for
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Clients:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self._clients)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def flat(self) -> list[tuple[int, int | None]]:
        return [answer for answers in self.answers.values() for answer in answers]

    def statuses(self) -> Counter[int]:
        return Counter(status for status, _ in self.flat)

    def asked_after(self, moment: float) -> list[tuple[int, int | None]]:
        """Answers to requests sent after `moment` (a time.monotonic()), not those merely answered later."""
        return [answer for asked, answer in zip(self._sent_at, self.in_order, strict=True) if asked > moment]

    async def _client(self, index: int) -> None:
        headers = {STICKY_HEADER: f"caller-{index}"} if self._sticky else {}
        async with httpx.AsyncClient(base_url=self._url, timeout=30.0, headers=headers) as client:
            sent = index
            while not self._stop.is_set():
                row = dict(self._rows[sent % len(self._rows)])
                if self._missing and sent % self._missing == 0:
                    row[next(iter(row))] = None
                asked = time.monotonic()
                answer = await client.post("/v1/predict", json=row)
                body = answer.json() if answer.status_code == 200 else {}
                self.answers[index].append((answer.status_code, body.get("version")))
                self.in_order.append(self.answers[index][-1])
                self._sent_at.append(asked)
                if self._feedback and body:
                    prediction_id = body["predictions"][0]["prediction_id"]
                    actual = self._labels[sent % len(self._labels)]
                    joined = await client.post(
                        "/v1/feedback", json={"prediction_id": prediction_id, "actual": actual}
                    )
                    assert joined.status_code == 200, joined.text
                sent += 1


async def _deployment(stack: DeployStack, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.service.url, timeout=30) as control:
        found = await control.get(f"/v1/deployments/{name}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


async def test_a_good_canary_is_promoted_after_its_steps_and_no_request_fails(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, collector = dataset(), deploy_stack.collector
    canary = {"strategy": "canary", "percent": 30, "steps": 2, "interval_seconds": 2, "min_requests": 15,
              "guardrails": CALM_LATENCY}  # fmt: skip
    clients: list[Clients] = []

    async def start_clients(released: Released) -> None:
        # Twelve named callers: at 30 percent, callers 6, 9 and 11 fall to the candidate.
        clients.append(Clients(released.endpoint, clients=12, sticky=True).start())

    released = await _release(
        deploy_stack,
        kafka_producer,
        release=canary,
        models=(fit_model(data), fit_model(data, c=0.5)),
        before_candidate=start_clients,
    )
    [started] = await collector.wait_until(ReleaseStarted, pipeline=released.name, timeout=120)
    assert (started.version, started.baseline_version, started.shares) == (2, 1, [30.0, 30.0])
    [promoted] = await collector.wait_until(ReleasePromoted, pipeline=released.name, timeout=120)
    [deployed] = await collector.wait_until(ModelDeployed, pipeline=released.name, where=_v(2), timeout=30)
    stream = clients[0]
    await _until(
        lambda: bool(stream.in_order) and stream.in_order[-1][1] == 2, what="every answer from version 2"
    )
    await stream.stop()

    checked = collector.of(ReleaseStepChecked, pipeline=released.name)
    assert [(c.window.step, c.passed, c.next_share) for c in checked] == [(1, True, 30.0), (2, True, None)]
    for window in (c.window for c in checked):
        assert window.candidate.requests >= 15 and window.candidate.errors == 0 and not window.breaches
        assert window.baseline.requests > window.candidate.requests  # 30 percent of the traffic
    assert (promoted.by, promoted.windows_passed) == ("guardrails", 2)
    assert deployed.causation_id == released.approvals[2].event_id
    statuses = stream.statuses()
    print(f"\ncanary: {len(stream.flat)} requests {dict(statuses)}; windows "
          f"{[(c.window.candidate.requests, c.window.baseline.requests) for c in checked]}")  # fmt: skip
    assert set(statuses) == {200}, statuses  # no request failed during the whole release
    for answers in stream.answers.values():  # a named caller stays on its side until the promotion
        versions = [version or 0 for _, version in answers]
        assert versions == sorted(versions), "a sticky caller went back and forth"
    assert {version for _, version in stream.flat} == {1, 2}
    shown = await _deployment(deploy_stack, released.name)
    assert (shown["active_version"], shown["serving_version"], shown["release"]) == (2, 2, None)


async def test_a_candidate_that_fails_requests_is_rolled_back_with_the_figures(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, collector = dataset(), deploy_stack.collector
    candidate = fit_model(data)  # no imputer: a missing value is a server error
    canary = {"strategy": "canary", "percent": 50, "steps": 3, "interval_seconds": 2, "min_requests": 20,
              "guardrails": CALM_LATENCY}  # fmt: skip
    released = await _release(
        deploy_stack, kafka_producer, release=canary, models=(_imputing(data), candidate)
    )
    await collector.wait_until(ReleaseStarted, pipeline=released.name, timeout=120)
    stream = Clients(released.endpoint, clients=6, missing_every=5).start()
    [rolled] = await collector.wait_until(ReleaseRolledBack, pipeline=released.name, timeout=120)
    # The event is published once every worker dropped the candidate; requests already in flight then
    # may still get its answers, so only requests sent after the event must all get version 1's.
    rolled_back_at = time.monotonic()
    await _until(lambda: len(stream.asked_after(rolled_back_at)) >= 40, what="answers after the rollback")
    await stream.stop()

    assert rolled.by == "guardrails" and rolled.window is not None
    assert rolled.window.candidate.errors > 0 and rolled.window.baseline.errors == 0
    assert rolled.reason.startswith("server errors:") and "version 1" in rolled.reason
    [checked] = collector.of(ReleaseStepChecked, pipeline=released.name)
    assert checked.passed is False and checked.window == rolled.window
    after = stream.asked_after(rolled_back_at)
    print(f"\nall answers: {Counter(stream.in_order)}; asked after the rollback: {Counter(after)}")
    assert {status for status, _ in after} == {200} and {v for _, v in after} == {1}
    shown = await _deployment(deploy_stack, released.name)
    assert (shown["active_version"], shown["release"]) == (1, None)
    assert not collector.of(ModelDeployed, pipeline=released.name, where=_v(2))


async def test_a_candidate_worse_on_live_ground_truth_is_rolled_back(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, collector = dataset(), deploy_stack.collector
    canary = {"strategy": "canary", "percent": 50, "steps": 3, "interval_seconds": 2, "min_requests": 30,
              "guardrails": {**CALM_LATENCY, "max_prediction_psi": 50.0}}  # fmt: skip
    released = await _release(
        deploy_stack, kafka_producer, release=canary, models=(fit_model(data), _flipped(data))
    )
    await collector.wait_until(ReleaseStarted, pipeline=released.name, timeout=120)
    stream = Clients(released.endpoint, clients=8, feedback=True).start()
    [rolled] = await collector.wait_until(ReleaseRolledBack, pipeline=released.name, timeout=120)
    await stream.stop()

    window = rolled.window
    assert window is not None and rolled.by == "guardrails"
    assert rolled.reason.startswith("live accuracy"), rolled.reason
    assert window.candidate.accuracy is not None and window.baseline.accuracy is not None
    assert window.candidate.accuracy < 0.3 < 0.85 < window.baseline.accuracy
    assert min(window.candidate.feedback, window.baseline.feedback) >= 20
    assert set(stream.statuses()) == {200}


async def test_in_shadow_callers_get_only_the_current_answers_and_both_are_captured_and_compared(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, collector = dataset(), deploy_stack.collector
    # The candidate is a weaker fit judged on a few dozen feedback joins per window: its live accuracy is
    # compared here, not judged (the flipped-labels test judges it), so a noisy window cannot end the shadow.
    shadow = {"strategy": "shadow", "steps": 2, "interval_seconds": 2, "min_requests": 20,
              "promotion": "manual", "guardrails": {**CALM_LATENCY, "max_accuracy_drop": 0.5}}  # fmt: skip
    released = await _release(
        deploy_stack, kafka_producer, release=shadow, models=(fit_model(data), fit_model(data, c=0.05))
    )
    await collector.wait_until(ReleaseStarted, pipeline=released.name, timeout=120)
    stream = Clients(released.endpoint, feedback=True).start()
    checked = await collector.wait_until(ReleaseStepChecked, pipeline=released.name, count=2, timeout=120)
    await _until(lambda: _awaiting(deploy_stack, released.name), what="the release to await its promotion")
    served_in_shadow = list(stream.flat)
    assert {version for _, version in served_in_shadow} == {1}  # callers never got the candidate's answers
    assert all(c.passed and not c.window.breaches for c in checked), [c.window.breaches for c in checked]
    for window in (c.window for c in checked):
        assert window.share == 0 and window.candidate.requests >= 20 and window.candidate.errors == 0
        assert window.agreement is not None and window.agreement > 0.8
        assert window.candidate.feedback > 0 and window.candidate.accuracy is not None
    # Both versions' predictions are captured, under the same prediction ids.
    await collector.wait_until(PredictionsCaptured, pipeline=released.name, where=_v(2), timeout=30)
    ids = {
        version: {p.prediction_id for e in collector.of(PredictionsCaptured, pipeline=released.name,
                                                         where=_v(version)) for p in e.predictions}
        for version in (1, 2)
    }  # fmt: skip
    assert ids[1] & ids[2], "no prediction captured for both versions"

    async with httpx.AsyncClient(base_url=deploy_stack.service.url, timeout=60) as control:
        path = f"/v1/deployments/{released.name}/release/promote"
        assert (await control.post(path)).status_code == 401
        assert (await control.post(path, headers=APPROVER)).status_code == 403
        done = await control.post(path, headers=OPERATOR, params={"reason": "shadow agreed"})
        assert done.status_code == 200, done.text
        assert done.json()["events"] == ["ReleasePromoted", "ModelDeployed"]
    [promoted] = await collector.wait_until(ReleasePromoted, pipeline=released.name, timeout=30)
    assert promoted.by == "test-operator"
    await _until(lambda: bool(stream.in_order) and stream.in_order[-1][1] == 2, what="answers from version 2")
    await stream.stop()
    assert set(stream.statuses()) == {200}


async def test_an_operator_pauses_resumes_and_aborts_a_release(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, collector = dataset(), deploy_stack.collector
    slow = {"strategy": "linear", "percent": 25, "interval_seconds": 3600}
    released = await _release(
        deploy_stack, kafka_producer, release=slow, models=(fit_model(data), fit_model(data, c=0.5))
    )
    await collector.wait_until(ReleaseStarted, pipeline=released.name, timeout=120)
    base = f"/v1/deployments/{released.name}/release"
    async with httpx.AsyncClient(base_url=deploy_stack.service.url, timeout=60, headers=OPERATOR) as control:
        assert (await control.post(f"{base}/resume")).status_code == 409  # it runs
        assert (await control.post(f"{base}/pause")).status_code == 200
        assert (await control.post(f"{base}/pause")).status_code == 409
        assert (await _deployment(deploy_stack, released.name))["release"]["status"] == "paused"
        assert (await control.post(f"{base}/resume")).status_code == 200
        shown = await asyncio.to_thread(_cli, deploy_stack, "deployments", "release", released.name)
        assert shown.returncode == 0 and "linear v2 vs v1: window 1/3 at 25% (running)" in shown.stdout
        listed = await asyncio.to_thread(_cli, deploy_stack, "deployments")
        assert "linear v2 vs v1" in listed.stdout, listed.stdout
        pause = ("deployments", "release", released.name, "pause")
        paused = await asyncio.to_thread(_cli, deploy_stack, *pause)
        assert paused.returncode == 0 and "pause done (ReleasePaused)" in paused.stdout, paused
        refused = await asyncio.to_thread(_cli, deploy_stack, *pause)
        assert refused.returncode == 1 and "409" in refused.stderr, refused
        assert (await control.post(f"{base}/resume")).status_code == 200
        rollback = await control.post(f"/v1/deployments/{released.name}/rollback")
        assert rollback.status_code == 409 and "abort" in rollback.text  # a release is aborted instead
        aborted = await control.post(f"{base}/abort", params={"reason": "not today"})
        assert aborted.status_code == 200, aborted.text
        assert (await control.post(f"{base}/abort")).status_code == 404  # no release any more
        assert (await control.post(f"{base}/restart")).status_code == 422
    await collector.wait_until(ReleasePaused, pipeline=released.name, timeout=30)
    await collector.wait_until(ReleaseResumed, pipeline=released.name, timeout=30)
    [rolled] = await collector.wait_until(ReleaseRolledBack, pipeline=released.name, timeout=30)
    assert (rolled.by, rolled.reason, rolled.window) == ("test-operator", "not today", None)
    async with httpx.AsyncClient(base_url=released.endpoint, timeout=30) as client:
        answers = [await client.post("/v1/predict", json=data.rows(data.test)[i]) for i in range(20)]
    assert {answer.json()["version"] for answer in answers} == {1}
    # The approval is handled: delivered again, it releases nothing. Version 3's approval, behind it on
    # the pipeline's partition, shows it was consumed before version 3 is released.
    await publish(kafka_producer, released.approvals[2])
    third = store_training_outputs(
        deploy_stack.store,
        bucket=deploy_stack.settings.artifacts_bucket,
        spec=_spec(released.name, slow),
        data=data,
        artifact=model_artifact(fit_model(data, c=0.2)),
        version=3,
    )
    await publish(kafka_producer, approval(third, version=3))
    await collector.wait_until(ReleaseStarted, pipeline=released.name, where=_v(3), timeout=120)
    assert len(collector.of(ReleaseStarted, pipeline=released.name, where=_v(2))) == 1


async def test_a_restart_in_the_middle_of_a_canary_resumes_it(
    deploy_stack: DeployStack, kafka_producer: AIOKafkaProducer
) -> None:
    data, collector, service = dataset(), deploy_stack.collector, deploy_stack.service
    canary = {"strategy": "canary", "percent": 30, "steps": 3, "interval_seconds": 2, "min_requests": 10,
              "guardrails": CALM_LATENCY}  # fmt: skip
    released = await _release(
        deploy_stack, kafka_producer, release=canary, models=(fit_model(data), fit_model(data, c=0.5))
    )
    await collector.wait_until(ReleaseStarted, pipeline=released.name, timeout=120)
    stream = Clients(released.endpoint).start()
    await collector.wait_until(ReleaseStepChecked, pipeline=released.name, timeout=120)
    await stream.stop()

    await service.kill()
    # The workers go with their owner: no split is left behind without the service that judges it.
    assert await wait_gone(service.tag(), timeout=30) == []
    await service.start()
    [resumed] = await collector.wait_until(ReleaseResumed, pipeline=released.name, timeout=120)
    assert resumed.by == "deploy" and resumed.step == 2
    stream = Clients(released.endpoint).start()
    [promoted] = await collector.wait_until(ReleasePromoted, pipeline=released.name, timeout=120)
    await _until(lambda: bool(stream.in_order) and stream.in_order[-1][1] == 2, what="answers from version 2")
    await stream.stop()
    checked = collector.of(ReleaseStepChecked, pipeline=released.name)
    assert [c.window.step for c in checked] == [1, 2, 3] and all(c.passed for c in checked)
    assert promoted.windows_passed == 3
    assert set(stream.statuses()) == {200}


def _cli(stack: DeployStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The conveyor CLI as a user runs it, against this module's deploy service, with the operator's token."""
    env = {**os.environ, "CONVEYOR_DEPLOY_URL": stack.service.url, "CONVEYOR_API_TOKEN": OPERATOR_TOKEN,
           "COLUMNS": "250"}  # fmt: skip
    conveyor = Path(sys.executable).with_name("conveyor")
    return subprocess.run([conveyor, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


async def _awaiting(stack: DeployStack, name: str) -> bool:
    release = (await _deployment(stack, name))["release"]
    return release is not None and release["status"] == "awaiting_promotion"


async def _until(condition: Any, *, what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _v(version: int) -> Any:
    return lambda event: event.version == version
