"""Only the registry approves: a ModelApproved forged with a plain Kafka producer is never served.

Each forgery is published with a raw aiokafka producer (no Conveyor code): an unsigned approval of
an artifact the registry never registered, a genuine signature moved onto a version the registry
never approved (a rejected or unknown one), and a genuine one over a swapped artifact. Each must
end as a DeploymentFailed that says why, a dead letter, and an endpoint still serving what it did.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.clients.events import EventWatcher
from shared.clients.serving import PredictionClient
from shared.events import ArtifactRef, DeploymentFailed, ModelApproved, ModelDeployed
from shared.messaging.publisher import encode
from shared.topics import dead_letter_topic
from shared.uris import ObjectLocation
from tests.e2e.conftest import Stack
from tests.faults.burst import feature_row
from tests.faults.conftest import Served
from tests.faults.dlq_tools import letter_headers

pytestmark = pytest.mark.infra


def forge(real: ModelApproved, **changes: object) -> ModelApproved:
    """A new chain's ModelApproved with ``real``'s fields (its signature included) but ``changes``."""
    fields = {
        **real.model_dump(),
        "event_id": uuid.uuid4(),
        "correlation_id": uuid.uuid4(),
        "causation_id": None,
    }
    return ModelApproved.model_validate({**fields, **changes})


async def serving_version(stack: Stack, pipeline: str) -> int | None:
    async with httpx.AsyncClient(base_url=stack.settings.deploy_base_url, timeout=30) as client:
        answer = await client.get(f"/v1/deployments/{pipeline}")
    assert answer.status_code == 200, answer.text
    return answer.json()["serving_version"]


async def dead_lettered(
    watcher: EventWatcher, forged: ModelApproved, *, timeout: float = 120
) -> dict[str, str]:
    topic, value = dead_letter_topic(forged.topic), encode(forged)
    deadline = time.monotonic() + timeout
    while not (found := [r for r in watcher.records if r.topic == topic and r.value == value]):
        assert time.monotonic() < deadline, f"{forged.version}: not dead-lettered within {timeout}s"
        await asyncio.sleep(0.2)
    assert len(found) == 1
    return letter_headers(found[0])


async def test_forged_approvals_are_refused_dead_lettered_and_change_nothing_served(
    stack: Stack, served: Served, producer: AIOKafkaProducer, dead_letters: EventWatcher
) -> None:
    real = served.chain[ModelApproved]
    assert isinstance(real, ModelApproved) and real.signature, "the registry signs its approvals"
    before = await serving_version(stack, served.pipeline)
    # The real model's bytes under a key the registry never registered: the digest alone proves nothing.
    copy = ObjectLocation(stack.settings.artifacts_bucket, f"runs/{served.pipeline}/forged/model.skops")
    body = await asyncio.to_thread(stack.store.get, real.model)
    unregistered: ArtifactRef = await asyncio.to_thread(stack.store.put, copy, body)
    forgeries = {
        "unsigned, never registered": forge(
            real, version=real.version + 50, model=unregistered, signature=""
        ),
        "signature moved to an unapproved version": forge(real, version=real.version + 1),
        "signature over another artifact": forge(real, model=unregistered, version=real.version + 2),
        "not a signature": forge(real, version=real.version + 3, signature="bm90IGEgc2lnbmF0dXJl"),
    }
    for forged in forgeries.values():
        await producer.send_and_wait(forged.topic, encode(forged), key=forged.key)

    for what, forged in forgeries.items():
        outcome = await stack.watcher.wait_for(
            DeploymentFailed, ModelDeployed, correlation_id=forged.correlation_id, timeout=120
        )
        assert isinstance(outcome, DeploymentFailed), (what, outcome)
        assert outcome.reason.startswith("ApprovalNotTrusted"), (what, outcome.reason)
        headers = await dead_lettered(dead_letters, forged)
        assert (
            headers["reason"] == "processing_error"
            and "ApprovalNotTrusted" in headers["error-type"] + headers["error"]
        ), (what, headers)
    assert await serving_version(stack, served.pipeline) == before
    with PredictionClient(served.deployed.endpoint_url) as client:
        assert client.predict([feature_row()]).version == before
