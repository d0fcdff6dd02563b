"""All five services as processes, in consumer groups of their own, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.clients.events import EventWatcher
from shared.events import ALL_EVENTS
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import ServiceProcess, free_port, free_port_range

SERVICES = ("registry", "ingest", "train", "evaluate", "deploy")
TOKEN = "e2e-approver-token"


@dataclass
class Stack:
    """The running services and how to reach them."""

    settings: Settings
    processes: dict[str, ServiceProcess]
    watcher: EventWatcher
    specs: SpecStore
    store: ArtifactStore

    @property
    def approver_headers(self) -> dict[str, str]:
        """A bearer token with the approver role."""
        return {"Authorization": f"Bearer {TOKEN}"}


def isolated_settings(settings: Settings, *, state_dir: Path, prefix: str = "e2e") -> Settings:
    """Ports, consumer groups, buckets and a state directory that no other stack shares.

    Buckets of its own: a deploy service restores every deployment recorded in its bucket, and
    must not start the endpoints of earlier runs.
    """
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "consumer_group_prefix": name,
            "landing_bucket": f"{name}-landing",
            "artifacts_bucket": f"{name}-artifacts",
            "registry_port": free_port(),
            "deploy_port": free_port(),
            "state_dir": state_dir,
        }
    )


def service_env(stack_settings: Settings) -> dict[str, str]:
    """The environment the service processes of a stack run with."""
    env = {name: value for name, value in os.environ.items() if name.startswith("CONVEYOR_")}
    env.update(
        CONVEYOR_CONSUMER_GROUP_PREFIX=stack_settings.consumer_group_prefix,
        CONVEYOR_LANDING_BUCKET=stack_settings.landing_bucket,
        CONVEYOR_ARTIFACTS_BUCKET=stack_settings.artifacts_bucket,
        CONVEYOR_REGISTRY_PORT=str(stack_settings.registry_port),
        CONVEYOR_DEPLOY_PORT=str(stack_settings.deploy_port),
        CONVEYOR_STATE_DIR=str(stack_settings.state_dir),
        CONVEYOR_SERVING_PORT_BASE=str(free_port_range(20, low=29000, high=32000)),
        CONVEYOR_SERVING_PORT_COUNT="20",
        # Admin: the console's tests approve, roll back and replay with the one token they sign in with.
        CONVEYOR_API_TOKENS=f'{{"{TOKEN}": {{"user": "e2e-admin", "role": "admin"}}}}',
        # The stack's state directory has no secrets.json of its own: the session's keys, explicitly.
        CONVEYOR_MINIO_ACCESS_KEY=stack_settings.minio_access_key,
        CONVEYOR_MINIO_SECRET_KEY=stack_settings.minio_secret_key.get_secret_value(),
    )
    if stack_settings.trace_file is not None:
        env["CONVEYOR_TRACE_FILE"] = str(stack_settings.trace_file)
    return env


@asynccontextmanager
async def running_stack(stack_settings: Settings, env: dict[str, str]) -> AsyncIterator[Stack]:
    """All five services as processes until the block ends; then stopped by pid."""
    topics = [event.topic for event in ALL_EVENTS]
    await ensure_topics(stack_settings, topics)
    for name in SERVICES:  # new groups skip what earlier tests published
        group = f"{stack_settings.consumer_group_prefix}-{name}"
        await start_group_at_end(stack_settings, group_id=group, topics=topics)
    watcher = EventWatcher(stack_settings, topics)
    await watcher.start()
    log_dir: Path = stack_settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            url = {
                "registry": stack_settings.registry_base_url,
                "deploy": stack_settings.deploy_base_url,
            }.get(name)
            process = ServiceProcess(
                name, env=env, log_dir=log_dir, ready_url=f"{url}/health/ready" if url else None
            )
            await asyncio.to_thread(process.start, timeout=120)
            processes[name] = process
        store = ArtifactStore.from_settings(stack_settings)
        yield Stack(
            settings=stack_settings,
            processes=processes,
            watcher=watcher,
            specs=SpecStore(store, bucket=stack_settings.artifacts_bucket),
            store=store,
        )
    finally:
        for process in reversed(processes.values()):
            await asyncio.to_thread(process.stop)
        await watcher.stop()


@pytest.fixture(scope="module")
def stack_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Ports, consumer groups and a state directory that no other test shares."""
    state_dir = tmp_path_factory.mktemp("e2e-state")
    isolated = isolated_settings(settings, state_dir=state_dir)
    return isolated.model_copy(update={"trace_file": state_dir / "spans.jsonl"})


@pytest.fixture(scope="module")
def stack_env(stack_settings: Settings) -> dict[str, str]:
    """The environment the service processes run with."""
    return service_env(stack_settings)


@pytest.fixture(scope="module")
async def stack(stack_settings: Settings, stack_env: dict[str, str]) -> AsyncIterator[Stack]:
    """Everything running; stopped (by pid) when the module's tests are done."""
    async with running_stack(stack_settings, stack_env) as running:
        yield running


@pytest.fixture
def pipeline_name() -> Iterator[str]:
    """A pipeline no other test uses."""
    yield f"e2e-{uuid.uuid4().hex[:8]}"
