"""The cluster suite (`make test-cluster`): a three-broker Kafka and every service, the registry twice.

Opt-in and separate from `make test`: its own KRaft cluster of three brokers on six ports from
CONVEYOR_KAFKA_CLUSTER_PORT_BASE (clients port and controller port of each broker), its own state
directory, consumer groups and buckets; MinIO is the test session's. Everything it starts is stopped
by process id at the end.

The cluster requires SASL/SCRAM with ACLs (CONVEYOR_KAFKA_SASL, infra.kafka_access): every service
runs as its own Kafka principal, the suite's own clients as ``admin``, so each test here also shows
the flow working under least privilege (test_kafka_sasl.py checks the refusals).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infra.kafka import kafka_ready, start_kafka, stop_kafka
from infra.kafka_access import as_admin, service_principal
from shared.settings import Settings
from tests.cluster.sasl_stack import running_sasl_stack
from tests.e2e.conftest import Stack, isolated_settings, service_env
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
            "kafka_sasl": True,
        }
    )


@pytest.fixture(scope="package")
def kafka_cluster(cluster_settings: Settings) -> Iterator[Settings]:
    """The three brokers, running until the suite ends; the suite's own clients connect as ``admin``."""
    start_kafka(cluster_settings, timeout=180)
    yield as_admin(cluster_settings)
    stop_kafka(cluster_settings)


@pytest.fixture(scope="package")
def cluster_env(kafka_cluster: Settings) -> dict[str, str]:
    """What the suite's service processes run with: the cluster, and two registry replicas."""
    env = service_env(kafka_cluster)
    env.update(
        CONVEYOR_KAFKA_BROKERS=str(BROKERS),
        CONVEYOR_KAFKA_BOOTSTRAP_SERVERS=kafka_cluster.bootstrap_servers,
        CONVEYOR_REGISTRY_REPLICAS="2",
        CONVEYOR_KAFKA_SASL="1",  # each process's own principal is added where it starts
    )
    return env


def registry_replica(settings: Settings, env: dict[str, str], *, label: str, port: int) -> ServiceProcess:
    """A registry process on a port of its own that also serves the registry's address.

    Both replicas answer on ``registry_port``, where the other services call the registry
    (``services.registry.__main__.listeners``): a killed replica does not take that address with it.
    """
    own = {"CONVEYOR_REGISTRY_PORT": str(port), "CONVEYOR_REGISTRY_URL": settings.registry_base_url}
    return ServiceProcess(
        "registry",
        label=label,
        env={**env, **own, **service_principal(settings, "registry")},
        log_dir=settings.state_dir / "logs",
        ready_url=f"http://{settings.registry_host}:{port}/health/ready",
    )


@pytest.fixture(scope="package")
async def cluster_stack(kafka_cluster: Settings, cluster_env: dict[str, str]) -> AsyncIterator[Stack]:
    """Every service on the cluster, the registry twice (``registry``, ``registry-2``) in one group.

    Each replica also listens on a port of its own, so that a test can talk to either one. A port the
    kernel hands out, like the stack's registry_port: registry_port + 1 (as `conveyor up` places a
    second replica) was once taken by a client connection's local port, and the replica could not bind.
    """
    async with running_sasl_stack(kafka_cluster, cluster_env) as stack:
        only_shared = stack.processes["registry"]  # the stack's registry: on registry_port alone
        for label in ("registry", "registry-2"):
            replica = registry_replica(kafka_cluster, cluster_env, label=label, port=free_port())
            await asyncio.to_thread(replica.start, timeout=120)
            stack.processes[label] = replica  # stopped with the others when the block ends
        # Stopped once the replicas listen beside it, so that registry_port is never free meanwhile.
        await asyncio.to_thread(only_shared.stop)
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
    coordinators, back to it; the other tests run on an undisturbed cluster. (A registry stall once
    blamed on that move, the survivor consuming nothing until the killed replica came back, was
    evaluate calling the killed replica's address: see ``registry_replica``, issue 10.)
    """
    items.sort(key=lambda item: "test_kafka_cluster" in item.nodeid)
