"""One deploy service process per test module, against the real Kafka and MinIO, with buckets of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaProducer
from minio import Minio
from pydantic import SecretStr

from services.deploy.app import CONSUMED, PRODUCED
from services.deploy.settings import DeploySettings
from shared import topics
from shared.clients.events import EventWatcher
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.storage import ArtifactStore, minio_client
from tests.integration.deploy.service_process import DeployProcess, cleanup, wait_gone
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import free_port, free_port_range

APPROVER_TOKEN, OPERATOR_TOKEN = "deploy-test-approver", "deploy-test-operator"


@pytest.fixture(scope="module")
def deploy_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> DeploySettings:
    """Deploy settings with buckets, ports and a state directory no other test uses."""
    tag = uuid.uuid4().hex[:10]
    return DeploySettings(
        **settings.model_dump(),
    ).model_copy(
        update={
            # A consumer group of its own: no other deploy service shares its partitions.
            "consumer_group_prefix": f"test-{tag}",
            "artifacts_bucket": f"deploy-art-{tag}",
            "landing_bucket": f"deploy-land-{tag}",
            "state_dir": tmp_path_factory.mktemp("deploy-state"),
            "deploy_port": free_port(),
            "serving_port_base": free_port_range(10, low=21000, high=29000),
            "serving_port_count": 10,
            "capture_flush_interval_s": 0.2,
            "capture_batch_size": 100,
            "serving_ready_timeout_s": 90.0,
            "api_tokens": SecretStr(
                json.dumps(
                    {
                        APPROVER_TOKEN: {"user": "test-approver", "role": "approver"},
                        OPERATOR_TOKEN: {"user": "test-operator", "role": "operator"},
                    }
                )
            ),
        }
    )


@pytest.fixture(scope="module")
def deploy_store(deploy_settings: DeploySettings) -> Iterator[ArtifactStore]:
    """The store the deploy service uses (its own landing and artifacts buckets), emptied afterwards."""
    store = ArtifactStore.from_settings(deploy_settings)
    store.ensure_buckets()
    yield store
    _remove_buckets(minio_client(deploy_settings), store.buckets)


@pytest.fixture(scope="module")
async def kafka_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A producer for the events a test publishes."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


@dataclass
class DeployStack:
    """The running deploy service and what watches it."""

    settings: DeploySettings
    service: DeployProcess
    collector: EventWatcher
    store: ArtifactStore


@pytest.fixture(scope="module")
async def deploy_stack(
    deploy_settings: DeploySettings, deploy_store: ArtifactStore
) -> AsyncIterator[DeployStack]:
    """The deploy service as a process; stopping it must leave no endpoint worker behind."""
    watched = [*PRODUCED, topics.PREDICTIONS_CAPTURED]
    await ensure_topics(deploy_settings, [*CONSUMED, *PRODUCED])
    await start_group_at_end(
        deploy_settings, group_id=f"{deploy_settings.consumer_group_prefix}-deploy", topics=list(CONSUMED)
    )
    collector = EventWatcher(deploy_settings, watched)
    await collector.start()
    service = DeployProcess(deploy_settings)
    await service.start()
    stack = DeployStack(settings=deploy_settings, service=service, collector=collector, store=deploy_store)
    try:
        yield stack
    finally:
        await stack.service.stop()
        left = await wait_gone(service.tag(), timeout=30)
        cleanup(service.tag())
        await collector.stop()
        assert not left, f"processes left after the deploy service stopped: {left}"


def _remove_buckets(client: Minio, buckets: tuple[str, ...]) -> None:
    for bucket in buckets:
        if not client.bucket_exists(bucket):
            continue
        for obj in client.list_objects(bucket, recursive=True):
            if obj.object_name is not None:
                client.remove_object(bucket, obj.object_name)
        client.remove_bucket(bucket)
