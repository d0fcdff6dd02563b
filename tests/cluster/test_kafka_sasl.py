"""Kafka with SASL/SCRAM and ACLs (opt-in): only the registry's principal may write the approval topics.

The whole cluster suite runs on brokers that require SASL (conftest.py), each service as its own
principal. Here the broker itself is asked: an approval written with another service's credentials
is refused (TopicAuthorizationFailed), the registry's is accepted, a client without credentials or
with a wrong password never gets in, and an arrival published as the CLI's principal still becomes
a registered, approved version.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from infra.kafka_access import as_principal
from services.console.feed import Changes, Feed
from services.console.timeline import Timeline
from shared.clients.events import publish_data_arrival
from shared.events import DeploymentFailed, ModelApproved, ModelRegistered
from shared.messaging import client_options
from shared.messaging.acls import REGISTRY_TOPICS
from shared.messaging.publisher import encode
from shared.settings import Settings
from tests.e2e.conftest import Stack
from tests.faults.burst import cheap_spec, dataset_csv

pytestmark = pytest.mark.infra

OTHERS = ("ingest", "train", "evaluate", "deploy", "console", "cli")


async def producer_as(settings: Settings, principal: str) -> AIOKafkaProducer:
    """A plain aiokafka producer (no Conveyor code on the path) logged in as ``principal``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=10_000,
        **client_options(as_principal(settings, principal)),
    )
    await producer.start()
    return producer


@pytest.fixture(scope="module")
async def approved(cluster_stack: Stack) -> ModelApproved:
    """One arrival, published as the CLI's principal, registered and approved by the registry."""
    stack = cluster_stack
    pipeline = f"cluster-sasl-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(stack.specs.apply, cheap_spec(pipeline))
    as_cli = as_principal(stack.settings, "cli")
    arrival = await publish_data_arrival(as_cli, pipeline=pipeline, data=dataset_csv(3), filename="a.csv")
    await stack.watcher.wait_for(ModelRegistered, correlation_id=arrival.correlation_id, timeout=300)
    event = await stack.watcher.wait_for(ModelApproved, correlation_id=arrival.correlation_id, timeout=120)
    assert isinstance(event, ModelApproved)
    return event


async def test_an_arrival_becomes_an_approved_version_under_sasl(approved: ModelApproved) -> None:
    assert approved.version == 1 and approved.signature


@pytest.mark.parametrize("principal", OTHERS)
async def test_another_principal_cannot_write_the_approval_topics(
    stack: Stack, approved: ModelApproved, principal: str
) -> None:
    forged = approved.model_copy(update={"event_id": uuid.uuid4(), "correlation_id": uuid.uuid4()})
    producer = await producer_as(stack.settings, principal)
    try:
        for topic in REGISTRY_TOPICS:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topic, encode(forged), key=forged.key)
    finally:
        await producer.stop()
    assert not stack.watcher.of(ModelApproved, where=lambda e: e.event_id == forged.event_id)


async def test_the_registry_principal_may_write_them_and_the_signature_still_decides(
    stack: Stack, approved: ModelApproved
) -> None:
    # The broker lets the registry's principal write; a version it never signed is still refused.
    unsigned = approved.model_copy(
        update={"event_id": uuid.uuid4(), "correlation_id": uuid.uuid4(), "version": 999}
    )
    producer = await producer_as(stack.settings, "registry")
    try:
        written = await producer.send_and_wait(unsigned.topic, encode(unsigned), key=unsigned.key)
    finally:
        await producer.stop()
    assert written.offset >= 0
    failed = await stack.watcher.wait_for(
        DeploymentFailed, correlation_id=unsigned.correlation_id, timeout=120
    )
    assert isinstance(failed, DeploymentFailed) and "ApprovalNotTrusted" in failed.reason, failed


async def test_a_client_without_credentials_is_refused(stack: Stack) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers, request_timeout_ms=5000)
    try:
        with pytest.raises(KafkaConnectionError):
            await asyncio.wait_for(producer.start(), timeout=60)
    finally:
        await producer.stop()


async def test_a_wrong_password_is_refused(stack: Stack) -> None:
    wrong = stack.settings.model_copy(
        update={"kafka_sasl_username": "registry", "kafka_sasl_password": SecretStr("not-the-password")}
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=wrong.bootstrap_servers, request_timeout_ms=5000, **client_options(wrong)
    )
    try:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.start(), timeout=60)
    finally:
        await producer.stop()


async def test_the_consoles_feed_reads_every_topic_as_its_own_principal(
    stack: Stack, approved: ModelApproved
) -> None:
    timeline = Timeline()
    feed = Feed(as_principal(stack.settings, "console"), timeline, Changes())
    await feed.start()  # ACLs let the console read the event topics, and nothing else decides it
    try:
        await asyncio.wait_for(feed.caught_up.wait(), timeout=120)
    finally:
        await feed.stop()
    # The arrival's whole path, read back under SASL: the registry's announcement and its approval.
    arrival = timeline.arrivals[approved.correlation_id]
    assert arrival.event_of(ModelApproved) == approved
    registered = arrival.event_of(ModelRegistered)
    assert isinstance(registered, ModelRegistered) and registered.version == approved.version
