"""The services as processes on the real servers, and a watcher over every Conveyor topic.

They live while this package's tests run (package-scoped): with groups of their own, services left
running would also read other suites' arrivals and reject them, whose specs they do not have.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.clients.events import EventWatcher
from shared.events import ALL_EVENTS
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, minio_client
from tests.bench.harness import remove_bucket
from tests.e2e.conftest import isolated_settings
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.infra

PIPELINE_SERVICES = ("ingest", "train", "evaluate")


@pytest.fixture(scope="package")
def flow_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session's settings with a registry port, consumer groups and buckets of the flow's own, and
    spans written to a file.

    Its own buckets: a deploy service of the default ones, started later, reads the approvals these
    tests publish (a new consumer group starts from the beginning) and refuses models outside its
    buckets, instead of serving every test pipeline and restoring them at each start.
    """
    trace_file = tmp_path_factory.mktemp("traces") / "spans.jsonl"
    # The session's state directory: its keys sign and check what these services exchange.
    own = isolated_settings(settings, state_dir=settings.state_dir, prefix="flow")
    return own.model_copy(update={"trace_file": trace_file})


@pytest.fixture(scope="package")
def service_env(flow_settings: Settings) -> dict[str, str]:
    """The CONVEYOR_* environment that points services at the test servers."""
    env = {name: value for name, value in os.environ.items() if name.startswith("CONVEYOR_")}
    env["CONVEYOR_REGISTRY_PORT"] = str(flow_settings.registry_port)
    env["CONVEYOR_CONSUMER_GROUP_PREFIX"] = flow_settings.consumer_group_prefix
    env["CONVEYOR_LANDING_BUCKET"] = flow_settings.landing_bucket
    env["CONVEYOR_ARTIFACTS_BUCKET"] = flow_settings.artifacts_bucket
    env["CONVEYOR_TRACE_FILE"] = str(flow_settings.trace_file)
    env["CONVEYOR_RETRY_INITIAL_BACKOFF_S"] = "0.2"
    return env


@pytest.fixture(scope="package")
def services(
    flow_settings: Settings, service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    """registry, ingest, train and evaluate, each a ``python -m services.<name>`` process."""
    log_dir: Path = tmp_path_factory.mktemp("service-logs")
    running: dict[str, ServiceProcess] = {}
    try:
        registry = ServiceProcess(
            "registry",
            env=service_env,
            log_dir=log_dir,
            ready_url=f"{flow_settings.registry_base_url}/health/ready",
        )
        registry.start()
        running["registry"] = registry
        for name in PIPELINE_SERVICES:
            process = ServiceProcess(name, env=service_env, log_dir=log_dir)
            process.start()
            running[name] = process
        yield running
    finally:
        for process in reversed(running.values()):
            process.stop()


@pytest.fixture(scope="package")
async def watcher(flow_settings: Settings) -> AsyncIterator[EventWatcher]:
    """Every event published on Conveyor's topics from now on."""
    topics = [event.topic for event in ALL_EVENTS]
    await ensure_topics(flow_settings, topics)
    watcher = EventWatcher(flow_settings, topics)
    await watcher.start()
    yield watcher
    await watcher.stop()


@pytest.fixture(scope="package")
def artifacts(flow_settings: Settings) -> Iterator[ArtifactStore]:
    """The store the services write to; its buckets are emptied and removed after the session."""
    store = ArtifactStore.from_settings(flow_settings)
    store.ensure_buckets()
    yield store
    client = minio_client(flow_settings)
    for bucket in (flow_settings.landing_bucket, flow_settings.artifacts_bucket):
        remove_bucket(client, bucket)


@pytest.fixture(scope="package")
def specs(flow_settings: Settings, artifacts: ArtifactStore) -> SpecStore:
    """The pipeline specs the services read."""
    return SpecStore(artifacts, bucket=flow_settings.artifacts_bucket)
