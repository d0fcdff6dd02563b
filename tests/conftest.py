"""Real Kafka and MinIO for integration and end-to-end tests; a fresh topic and bucket per test.

The servers are started here when they are not already running (``make up`` leaves them up for
fast re-runs) and stopped again at the end only if this session started them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaProducer
from minio import Minio

from infra import stack
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.storage import ArtifactStore, minio_client
from tests.integration.kafka_tools import new_topic_name

pytestmark = pytest.mark.infra


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    """Settings pointing at running servers, started for this session if needed."""
    settings = Settings()
    started_here = not all(entry.healthy for entry in stack.status(settings))
    if started_here:
        settings = stack.up(settings)  # with the state directory's generated secrets
    yield settings
    if started_here:
        stack.down(settings)


@pytest.fixture
async def topic(settings: Settings) -> str:
    """A topic (with its dead-letter topic) that no other test uses."""
    name = new_topic_name()
    await ensure_topics(settings, [name])
    return name


@pytest.fixture
def minio(settings: Settings) -> Minio:
    """A MinIO client for the running server."""
    return minio_client(settings)


@pytest.fixture
def bucket(minio: Minio) -> Iterator[str]:
    """A bucket that no other test uses, emptied and removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    minio.make_bucket(name)
    yield name
    for obj in minio.list_objects(name, recursive=True):
        if obj.object_name is not None:
            minio.remove_object(name, obj.object_name)
    minio.remove_bucket(name)


@pytest.fixture
def store(minio: Minio, bucket: str) -> ArtifactStore:
    """An artifact store over the test's own bucket."""
    return ArtifactStore(minio, buckets=(bucket,))


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A raw producer, for publishing bytes that no Conveyor publisher would produce."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, max_request_size=settings.kafka_max_message_bytes
    )
    await producer.start()
    yield producer
    await producer.stop()
