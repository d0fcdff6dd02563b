"""The cluster suite (`make test-cluster`): a three-broker Kafka and every service, the registry twice.

Opt-in and separate from `make test`: its own KRaft cluster of three brokers on six ports from
CONVEYOR_KAFKA_CLUSTER_PORT_BASE (clients port and controller port of each broker), its own state
directory, consumer groups and buckets; MinIO is the test session's. Everything it starts is stopped
by process id at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infra.kafka import kafka_ready, start_kafka, stop_kafka
from shared.settings import Settings
from tests.e2e.conftest import Stack, isolated_settings, running_stack, service_env
from tests.integration.processes import ServiceProcess, free_port

BROKERS = 3


@pytest.fixture(scope="package")
def cluster_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Three brokers on ports of their own; consumer groups, buckets and state of the suite's own."""
    isolated = isolated_settings(
        settings, state_dir=tmp_path_factory.mktemp("cluster-state"), prefix="cluster"
    )
    base = settings.kafka_cluster_port_base
    return isolated.model_copy(
        update={
            "kafka_brokers": BROKERS,
            "kafka_port": base,
            "kafka_controller_port": base + 1,
            "kafka_cluster_port_base": base + 2,
            "kafka_bootstrap_servers": None,
            "registry_replicas": 2,
        }
    )


@pytest.fixture(scope="package")
def kafka_cluster(cluster_settings: Settings) -> Iterator[Settings]:
    """The three brokers, running until the suite ends."""
    start_kafka(cluster_settings, timeout=180)
    yield cluster_settings
    stop_kafka(cluster_settings)


@pytest.fixture(scope="package")
def cluster_env(kafka_cluster: Settings) -> dict[str, str]:
    """What the suite's service processes run with: the cluster, and two registry replicas."""
    env = service_env(kafka_cluster)
    env.update(
        CONVEYOR_KAFKA_BROKERS=str(BROKERS),
        CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=kafka_cluster.bootstrap_servers,
        CONVEYOR_REGISTRY_REPLICAS="2",
    )
    return env


@pytest.fixture(scope="package")
async def cluster_stack(kafka_cluster: Settings, cluster_env: dict[str, str]) -> AsyncIterator[Stack]:
    """Every service on the cluster, plus a second registry (``registry-2``) in the same group."""
    async with running_stack(kafka_cluster, cluster_env) as stack:
        second = ServiceProcess(
            "registry",
            label="registry-2",
            env={**cluster_env, "CONVEYOR_REGISTRY_PORT": str(free_port())},
            log_dir=kafka_cluster.state_dir / "logs",
        )
        second.ready_url = f"http://{kafka_cluster.registry_host}:{second.env['CONVEYOR_REGISTRY_PORT']}"
        second.ready_url += "/health/ready"
        await asyncio.to_thread(second.start, timeout=120)
        stack.processes["registry-2"] = second  # stopped with the others when the block ends
        yield stack


@pytest.fixture
async def stack(cluster_stack: Stack) -> Stack:
    """The suite's stack with every broker and every service up (an earlier test may have killed one)."""
    if not await asyncio.to_thread(kafka_ready, cluster_stack.settings):
        await asyncio.to_thread(start_kafka, cluster_stack.settings, timeout=180)
    for process in cluster_stack.processes.values():
        if process.process is None or process.process.poll() is not None:
            await asyncio.to_thread(process.start, timeout=120)
    return cluster_stack


@pytest.fixture
def pipeline_name() -> str:
    """A pipeline no other test uses."""
    return f"cluster-{uuid.uuid4().hex[:8]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the broker-kill test last.

    About five minutes after a killed broker restarts, Kafka moves preferred leaders, and so group
    coordinators, back to it. A registry replica SIGKILLed during that move left its group without a
    working rebalance for minutes (the survivor consumed nothing until the killed replica came
    back): an open issue the README records. The registry test runs on an undisturbed cluster.
    """
    items.sort(key=lambda item: "test_kafka_cluster" in item.nodeid)
