"""Warm workers on the pipeline's own port: versions switched in place, lost workers started again.

The rollout is driven directly (no deploy service, no Kafka subscription); the workers still
publish their captures to the real Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from services.deploy.processes import ProcessBook, tagged
from services.deploy.rollout import Rollout
from services.deploy.serving.model_store import model_tag
from services.deploy.serving.predict import ModelCard
from services.deploy.serving.warmup import sample
from services.deploy.settings import DeploySettings
from services.deploy.workers import PROJECT_ROOT, ServingError
from shared.settings import Settings
from shared.storage import sha256_hex
from tests.integration.deploy.fixtures import dataset, fit_model, model_artifact
from tests.integration.processes import free_port

PIPELINE = "rollout"
# BentoML fixes its model store on first use in a process, so models are saved by a process of their own.
_SAVE = (
    "import sys; from pathlib import Path; "
    "from services.deploy.serving.model_store import save_model; "
    "from services.deploy.serving.predict import ModelCard; "
    "from services.deploy.serving.warmup import Warmup; "
    "save_model(ModelCard.model_validate_json(sys.argv[1]), Path(sys.argv[2]).read_bytes(), "
    "Warmup.model_validate_json(Path(sys.argv[3]).read_text()))"
)
VERSIONS = (1, 2, 3)


@pytest.fixture(scope="module")
def two_workers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> DeploySettings:
    """Deploy settings with two workers per endpoint and a state directory of their own."""
    return DeploySettings(**settings.model_dump()).model_copy(
        update={
            "state_dir": tmp_path_factory.mktemp("rollout-state"),
            "serving_workers": 2,
            "serving_ready_timeout_s": 90.0,
            "serving_stop_timeout_s": 10.0,
        }
    )


def _save(settings: DeploySettings, directory: Path, *, version: int, c: float, broken: bool = False) -> str:
    data = dataset()
    model = fit_model(data, c=c)
    artifact = model_artifact(model)
    card = ModelCard(
        pipeline=PIPELINE,
        version=version,
        task="classification",
        numeric=tuple(data.features),
        classes=(0, 1),
        sha256=sha256_hex(artifact),
    )
    warmup = sample(model, card, data.test)
    if broken:  # answers the model does not give: the version must never be switched to
        warmup = warmup.model_copy(update={"labels": [1 - label for label in warmup.labels]})
    (directory / f"v{version}.skops").write_bytes(artifact)
    (directory / f"v{version}.json").write_text(warmup.model_dump_json())
    env = {**os.environ, "BENTOML_HOME": str(settings.bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    argv = [
        sys.executable, "-c", _SAVE, card.model_dump_json(),
        str(directory / f"v{version}.skops"), str(directory / f"v{version}.json"),
    ]  # fmt: skip
    subprocess.run(argv, env=env, cwd=PROJECT_ROOT, check=True)
    return model_tag(PIPELINE, version)


@pytest.fixture(scope="module")
def stored_tags(two_workers: DeploySettings, tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Three fitted versions (each answering a little differently) and a broken one, in the store."""
    directory = tmp_path_factory.mktemp("models")
    tags = {v: _save(two_workers, directory, version=v, c=10.0 ** (v - 2)) for v in VERSIONS}
    tags[9] = _save(two_workers, directory, version=9, c=1.0, broken=True)
    return tags


@pytest.fixture
async def rollout(two_workers: DeploySettings) -> AsyncIterator[Rollout]:
    """A rollout whose processes must all be gone once it is stopped."""
    rollout = Rollout(two_workers, ProcessBook(two_workers.run_dir))
    try:
        yield rollout
    finally:
        await rollout.stop_all()
        assert tagged(f"{two_workers.run_dir.resolve()}::", exact=False) == []


class Stream:
    """Clients sending predictions without pause, recording each answer's status and version."""

    def __init__(self, url: str, rows: list[dict[str, float]], clients: int = 4) -> None:
        self._url, self._rows, self._clients = url, rows, clients
        self.answers: list[tuple[int, int | None]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self._clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, offset: int) -> None:
        async with httpx.AsyncClient(base_url=self._url, timeout=30.0) as client:
            sent = offset
            while not self._stop.is_set():
                try:
                    answer = await client.post("/v1/predict", json=self._rows[sent % len(self._rows)])
                    version = answer.json().get("version") if answer.status_code == 200 else None
                    self.answers.append((answer.status_code, version))
                except httpx.TransportError:
                    self.answers.append((0, None))
                sent += 1


async def test_hot_swaps_and_rollbacks_under_load_fail_no_request(
    rollout: Rollout, stored_tags: dict[int, str]
) -> None:
    port = free_port()
    rows = dataset().rows(dataset().test)
    await rollout.roll_out(
        pipeline=PIPELINE, port=port, version=1, tag=stored_tags[1], correlation_id=uuid.uuid4()
    )
    workers = [worker.pid for worker in rollout.endpoints[PIPELINE].workers]
    stream = Stream(f"http://127.0.0.1:{port}", rows)
    stream.start()
    # Ten switches to a new version and two rollbacks, back to back, while the clients send.
    plan = [2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 1, 2]
    took = []
    for version in plan:
        started = time.monotonic()
        await rollout.roll_out(
            pipeline=PIPELINE,
            port=port,
            version=version,
            tag=stored_tags[version],
            correlation_id=uuid.uuid4(),
        )
        took.append(time.monotonic() - started)
        assert rollout.serving(PIPELINE) == version
    await _until_answered_by(stream, 2)
    await stream.stop()
    statuses = Counter(status for status, _ in stream.answers)
    print(f"\n{len(plan)} switches under load: {len(stream.answers)} requests {dict(statuses)}, "
          f"switch p50 {sorted(took)[len(took) // 2]:.3f} s, max {max(took):.3f} s")  # fmt: skip
    assert set(statuses) == {200}, statuses
    assert {version for _, version in stream.answers} <= set(VERSIONS)  # every answer names its version
    assert [worker.pid for worker in rollout.endpoints[PIPELINE].workers] == workers  # no new process


async def test_a_version_that_fails_its_warm_up_is_never_switched_to(
    rollout: Rollout, stored_tags: dict[int, str]
) -> None:
    port = free_port()
    row = dataset().rows(dataset().test)[0]
    await rollout.roll_out(
        pipeline=PIPELINE, port=port, version=1, tag=stored_tags[1], correlation_id=uuid.uuid4()
    )
    for tag, reason in ((stored_tags[9], "warm-up labels differ"), ("absent:v1", "NotFound")):
        with pytest.raises(ServingError, match=reason):
            await rollout.roll_out(
                pipeline=PIPELINE, port=port, version=9, tag=tag, correlation_id=uuid.uuid4()
            )
        assert rollout.serving(PIPELINE) == 1
        assert {_version(f"http://127.0.0.1:{port}", row) for _ in range(10)} == {1}


async def test_a_lost_worker_is_started_again_on_the_port_with_the_current_version(
    rollout: Rollout, stored_tags: dict[int, str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    row = dataset().rows(dataset().test)[0]
    await rollout.roll_out(
        pipeline=PIPELINE, port=port, version=1, tag=stored_tags[1], correlation_id=uuid.uuid4()
    )
    await rollout.roll_out(
        pipeline=PIPELINE, port=port, version=2, tag=stored_tags[2], correlation_id=uuid.uuid4()
    )
    endpoint = rollout.endpoints[PIPELINE]
    exited = asyncio.create_task(rollout.any_exit(timeout_s=60))  # what wakes the deploy service's healing
    await asyncio.sleep(0)  # it now waits on every worker
    lost = endpoint.workers[0]
    os.kill(lost.pid, signal.SIGKILL)
    await asyncio.wait_for(exited, timeout=10)
    assert rollout.serving(PIPELINE) is None
    assert _version(url, row) == 2  # the other worker still accepts on the shared socket

    assert await rollout.revive(PIPELINE) is True
    assert rollout.serving(PIPELINE) == 2 and rollout.endpoints[PIPELINE] is endpoint
    assert tagged(lost.tag, exact=True) == [endpoint.workers[0].pid] != [lost.pid]  # same name, new process
    assert await rollout.revive(PIPELINE) is False  # nothing lost: nothing to do
    assert {_version(url, row) for _ in range(20)} == {2}  # the new process loaded the current version


async def test_feedback_reaches_the_worker_that_served_the_prediction(
    rollout: Rollout, stored_tags: dict[int, str]
) -> None:
    port = free_port()
    data = dataset()
    await rollout.roll_out(
        pipeline=PIPELINE, port=port, version=1, tag=stored_tags[1], correlation_id=uuid.uuid4()
    )
    served: dict[int, list[tuple[str, int]]] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
        for attempt in range(200):  # new connections land on either worker
            answer = await client.post("/v1/predict", json=data.rows(data.test)[attempt % 50],
                                       headers={"connection": "close"})  # fmt: skip
            prediction = answer.json()["predictions"][0]
            worker = int(prediction["prediction_id"].split("-")[0][1:])
            served.setdefault(worker, []).append((prediction["prediction_id"], prediction["prediction"]))
            if len(served) == 2 and all(len(ids) >= 5 for ids in served.values()):
                break
        assert set(served) == {1, 2}, "both workers should have served predictions"
        joined = []
        for predictions in served.values():
            for prediction_id, label in predictions[:5]:
                for _ in range(2):  # through both workers, whichever the connection reaches
                    result = await client.post(
                        "/v1/feedback", json={"prediction_id": prediction_id, "actual": label},
                        headers={"connection": "close"},
                    )  # fmt: skip
                    joined.append(result.status_code)
                    if result.status_code == 200:
                        assert result.json()["correct"] is True
                        break
        unknown = await client.post("/v1/feedback", json={"prediction_id": "w2-nothing", "actual": 1})
    assert joined == [200] * 10, joined  # each joined at its first try, whichever worker took it
    assert unknown.status_code == 404


async def test_an_endpoint_that_cannot_start_leaves_no_process(
    rollout: Rollout, two_workers: DeploySettings
) -> None:
    with pytest.raises(ServingError, match="did not become ready"):
        await rollout.roll_out(
            pipeline="absent", port=free_port(), version=1, tag="absent:v1", correlation_id=uuid.uuid4()
        )
    assert rollout.endpoints == {}
    assert tagged(f"{two_workers.run_dir.resolve()}::", exact=False) == []


async def _until_answered_by(stream: Stream, version: int) -> None:
    deadline = time.monotonic() + 30
    count = len(stream.answers)
    while not any(v == version for _, v in stream.answers[count:]):
        assert time.monotonic() < deadline, f"no answer from version {version}"
        await asyncio.sleep(0.05)


def _version(url: str, row: dict[str, float]) -> int:
    answer = httpx.post(f"{url}/v1/predict", json=row, timeout=10.0)
    answer.raise_for_status()
    version: int = answer.json()["version"]
    return version


async def test_a_spare_worker_becomes_the_first_version_s_worker(
    two_workers: DeploySettings, stored_tags: dict[int, str]
) -> None:
    settings = two_workers.model_copy(update={"serving_workers": 1, "serving_spare_workers": 1})
    rollout = Rollout(settings, ProcessBook(settings.run_dir))
    try:
        await rollout.spares.start()
        [(spare, path)] = rollout.spares.waiting()
        await _until_exists(lambda: path)  # its imports are done: it waits for an endpoint
        port = free_port()
        started = time.monotonic()
        await rollout.roll_out(
            pipeline=PIPELINE, port=port, version=1, tag=stored_tags[1], correlation_id=uuid.uuid4()
        )
        took = time.monotonic() - started
        [worker] = rollout.endpoints[PIPELINE].workers
        assert worker is spare and worker.name == f"endpoint-{PIPELINE}-w1"
        assert _version(f"http://127.0.0.1:{port}", dataset().rows(dataset().test)[0]) == 1
        metrics = rollout.endpoints[PIPELINE].home / "prometheus_multiproc_dir"
        assert any(metrics.iterdir())  # the adopted worker writes the endpoint's metrics, not the spare's
        print(f"\nfirst version served by a spare worker in {took:.2f} s")
        await _until_exists(
            lambda: next(path for _, path in rollout.spares.waiting())
        )  # another took its place
    finally:
        await rollout.stop_all()
    assert tagged(f"{settings.run_dir.resolve()}::", exact=False) == []


async def _until_exists(path: Callable[[], Path]) -> None:
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(StopIteration):
            if path().exists():
                return
        assert time.monotonic() < deadline, "the spare's socket never appeared"
        await asyncio.sleep(0.1)
