"""Two deploy replicas: one owner per endpoint, approvals through either, takeover when the owner dies.

Six pipelines, one on each partition of the approval topic, are deployed by the first replica
alone; the second then joins the consumer group and takes half the partitions, so half of the
next approvals land on the replica that does not own the endpoint. Real processes, Kafka, MinIO.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from services.deploy.settings import DeploySettings
from shared.clients.serving import PredictionClient
from shared.events import ModelDeployed
from tests.integration.deploy.conftest import DeployStack
from tests.integration.deploy.fixtures import (
    approval,
    dataset,
    fit_model,
    model_artifact,
    pipeline_spec,
    publish,
    store_training_outputs,
)
from tests.integration.deploy.service_process import DeployProcess, cleanup, wait_gone
from tests.integration.processes import free_port

pytestmark = pytest.mark.infra

# Generous on a loaded 2-core machine: six endpoints are started again one after the other.
TAKEOVER_BOUND_S = 120.0


@pytest.fixture(scope="module")
def deploy_settings(deploy_settings: DeploySettings) -> DeploySettings:
    """Replicas that re-read the records every second."""
    return deploy_settings.model_copy(update={"deploy_replicas": 2, "serving_watch_interval_s": 1.0})


@pytest.fixture
async def second(
    deploy_stack: DeployStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DeployProcess]:
    """A second replica: same consumer group, buckets and ports, a state directory and API of its own."""
    settings = deploy_stack.settings.model_copy(
        update={"state_dir": tmp_path_factory.mktemp("replica-2"), "deploy_port": free_port()}
    )
    replica = DeployProcess(settings)
    try:
        yield replica
    finally:
        await replica.stop()
        await wait_gone(replica.tag(), timeout=30)
        cleanup(replica.tag())


def _one_per_partition(partitions: int) -> list[str]:
    """Pipeline names whose keys fall on each partition once (Kafka's default partitioner)."""
    names: dict[int, str] = {}
    while len(names) < partitions:
        name = f"rep-{uuid.uuid4().hex[:8]}"
        names.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
    return [names[p] for p in range(partitions)]


async def _approve(stack: DeployStack, producer: AIOKafkaProducer, name: str, version: int) -> None:
    data = dataset()
    published = await asyncio.to_thread(
        store_training_outputs,
        stack.store,
        bucket=stack.settings.artifacts_bucket,
        spec=pipeline_spec(name),
        data=data,
        artifact=model_artifact(fit_model(data, c=10.0 ** (version - 2))),
        version=version,
    )
    await publish(producer, approval(published, version=version))


def _version(url: str) -> int | None:
    try:
        with PredictionClient(url, timeout=5) as client:
            return client.predict(dataset().rows(dataset().test)[0]).version
    except Exception:
        return None


async def _until_all_serve(urls: dict[str, str], version: int, *, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        versions = await asyncio.gather(*(asyncio.to_thread(_version, url) for url in urls.values()))
        if set(versions) == {version}:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise AssertionError(f"not every endpoint served version {version} within {timeout} s: {versions}")


async def _until_logged(replica: DeployProcess, text: str, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in replica.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log of {replica.url}:\n{replica.log_tail()}")


async def test_approvals_reach_the_owner_through_either_replica_and_a_survivor_takes_over(
    deploy_stack: DeployStack, second: DeployProcess, kafka_producer: AIOKafkaProducer
) -> None:
    collector, first = deploy_stack.collector, deploy_stack.service
    names = _one_per_partition(deploy_stack.settings.kafka_partitions)
    for name in names:
        await _approve(deploy_stack, kafka_producer, name, 1)
    urls = {}
    for name in names:
        [deployed] = await collector.wait_until(ModelDeployed, pipeline=name, timeout=180)
        urls[name] = deployed.endpoint_url
    assert len(first.recorded("endpoint-")) == len(names)  # the first replica owns every endpoint

    await second.start()
    await _until_logged(second, "topic='conveyor.model.approved'")  # it was given partitions of the approvals
    for name in names:
        await _approve(deploy_stack, kafka_producer, name, 2)
    for name in names:
        await collector.wait_until(ModelDeployed, pipeline=name, where=lambda e: e.version == 2, timeout=180)
    await _until_all_serve(urls, 2, timeout=30)
    # Half the approvals were the second replica's; the first still owns every endpoint.
    assert "waiting for the replica that owns its endpoint" in second.log_path.read_text(errors="replace")
    assert second.recorded("endpoint-") == {} and len(first.recorded("endpoint-")) == len(names)

    await first.kill()
    assert await wait_gone(first.tag(), timeout=30) == []  # its workers went with it
    took = await _until_all_serve(urls, 2, timeout=TAKEOVER_BOUND_S)
    print(f"\ntakeover of {len(names)} endpoints: every one answered again after {took:.1f} s")
    assert len(second.recorded("endpoint-")) == len(names)

    await _approve(deploy_stack, kafka_producer, names[0], 3)  # the survivor consumes every partition now
    await collector.wait_until(ModelDeployed, pipeline=names[0], where=lambda e: e.version == 3, timeout=180)
    await _until_all_serve({names[0]: urls[names[0]]}, 3, timeout=30)
    await first.start()  # the fixture's teardown stops it again
