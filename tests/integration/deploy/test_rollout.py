"""Servers started without ``bentoml serve``: workers sharing one socket, failed starts leaving nothing.

The rollout is driven directly (no deploy service, no Kafka subscription); the workers still
publish their captures to the real Kafka.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest

from services.deploy.processes import ProcessBook, tagged
from services.deploy.rollout import PROJECT_ROOT, Rollout, ServingError
from services.deploy.serving.model_store import model_tag
from services.deploy.serving.predict import ModelCard
from services.deploy.settings import DeploySettings
from shared.settings import Settings
from shared.storage import sha256_hex
from tests.integration.deploy.fixtures import dataset, fit_model, model_artifact
from tests.integration.processes import free_port

PIPELINE = "rollout"
# BentoML fixes its model store on first use in a process, so the model is saved by a process of its own.
_SAVE = (
    "import sys; from pathlib import Path; "
    "from services.deploy.serving.model_store import save_model; "
    "from services.deploy.serving.predict import ModelCard; "
    "save_model(ModelCard.model_validate_json(sys.argv[1]), Path(sys.argv[2]).read_bytes())"
)


@pytest.fixture(scope="module")
def two_workers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> DeploySettings:
    """Deploy settings with two workers per server and a state directory of their own."""
    return DeploySettings(**settings.model_dump()).model_copy(
        update={
            "state_dir": tmp_path_factory.mktemp("rollout-state"),
            "serving_workers": 2,
            "serving_ready_timeout_s": 90.0,
            "serving_stop_timeout_s": 10.0,
        }
    )


@pytest.fixture(scope="module")
def stored_tag(two_workers: DeploySettings, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fitted model saved in the servers' BentoML store."""
    data = dataset()
    artifact = model_artifact(fit_model(data))
    card = ModelCard(
        pipeline=PIPELINE,
        version=1,
        task="classification",
        numeric=tuple(data.features),
        classes=(0, 1),
        sha256=sha256_hex(artifact),
    )
    path = tmp_path_factory.mktemp("model") / "model.skops"
    path.write_bytes(artifact)
    env = {**os.environ, "BENTOML_HOME": str(two_workers.bentoml_home), "BENTOML_DO_NOT_TRACK": "True"}
    argv = [sys.executable, "-c", _SAVE, card.model_dump_json(), str(path)]
    subprocess.run(argv, env=env, cwd=PROJECT_ROOT, check=True)
    return model_tag(PIPELINE, 1)


@pytest.fixture
async def rollout(two_workers: DeploySettings) -> AsyncIterator[Rollout]:
    """A rollout whose processes must all be gone once it is stopped."""
    rollout = Rollout(two_workers, ProcessBook(two_workers.run_dir))
    try:
        yield rollout
    finally:
        await rollout.stop_all()
        assert tagged(f"{two_workers.run_dir.resolve()}::", exact=False) == []


async def test_two_workers_share_the_port_and_a_lost_worker_is_started_again_on_it(
    rollout: Rollout, stored_tag: str
) -> None:
    row = dataset().rows(dataset().test)[0]
    port = free_port()
    serve = partial(rollout.roll_out, pipeline=PIPELINE, port=port, version=1, tag=stored_tag)
    await serve(correlation_id=uuid.uuid4())
    server = rollout.endpoints[PIPELINE].server
    assert server is not None and len(server.workers) == 2 and rollout.serving(PIPELINE) == 1
    assert _version(f"http://127.0.0.1:{port}", row) == 1

    exited = asyncio.create_task(rollout.any_exit(timeout_s=60))  # what wakes the deploy service's healing
    await asyncio.sleep(0)  # it now waits on every worker
    lost = server.workers[0]
    os.kill(lost.pid, signal.SIGKILL)
    await asyncio.wait_for(exited, timeout=10)
    assert rollout.serving(PIPELINE) is None
    assert _version(server.url, row) == 1  # the other worker still accepts on the shared socket

    assert await rollout.revive(PIPELINE) is True
    assert rollout.serving(PIPELINE) == 1 and rollout.endpoints[PIPELINE].server is server  # same port
    assert tagged(lost.tag, exact=True) == [server.workers[0].pid] != [lost.pid]  # same name, new process
    assert await rollout.revive(PIPELINE) is False  # nothing lost: nothing to do
    assert _version(f"http://127.0.0.1:{port}", row) == 1

    await serve(correlation_id=uuid.uuid4())  # a full restart still replaces the whole server
    assert rollout.endpoints[PIPELINE].server is not server and rollout.serving(PIPELINE) == 1
    assert all(tagged(worker.tag, exact=True) == [] for worker in server.workers)
    assert not server.home.exists()


async def test_a_server_that_cannot_start_leaves_no_process_and_no_endpoint(
    rollout: Rollout, two_workers: DeploySettings
) -> None:
    with pytest.raises(ServingError, match="did not become ready"):
        await rollout.roll_out(
            pipeline="absent", port=free_port(), version=1, tag="absent:v1", correlation_id=uuid.uuid4()
        )
    assert rollout.endpoints == {}
    assert tagged(f"{two_workers.run_dir.resolve()}::", exact=False) == []


def _version(url: str, row: dict[str, float]) -> int:
    answer = httpx.post(f"{url}/v1/predict", json=row, timeout=10.0)
    answer.raise_for_status()
    version: int = answer.json()["version"]
    return version
