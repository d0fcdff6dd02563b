"""Two registry replicas share one journal: kill the one that owns a pipeline mid-burst, lose nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
import uuid

import httpx
import pytest

from shared import topics
from shared.clients.events import publish_data_arrival
from shared.events import ModelRegistered
from shared.pipeline_spec import PipelineSpec
from tests.cluster.cluster_tools import consumer_pid
from tests.e2e.conftest import Stack
from tests.faults.burst import (
    BURST,
    assert_processed_once_in_effect,
    assert_registered_versions,
    cheap_spec,
    dataset_csv,
    publish_burst,
    wait_until_decided,
    wait_until_reached,
)

pytestmark = pytest.mark.infra

SEED = int(os.environ.get("CONVEYOR_FAULTS_SEED", time.time_ns() % 1_000_000))


def through(stack: Stack, replica: str) -> Stack:
    """The stack as seen through one registry replica's HTTP API."""
    port = int(stack.processes[replica].env["CONVEYOR_REGISTRY_PORT"])
    return dataclasses.replace(stack, settings=stack.settings.model_copy(update={"registry_port": port}))


async def owner_of(stack: Stack, pipeline: str) -> str:
    """The registry replica whose consumer holds the pipeline's partition of ModelEvaluated."""
    group = f"{stack.settings.consumer_group_prefix}-registry"
    deadline = time.monotonic() + 60
    while (
        pid := await consumer_pid(stack.settings, group=group, topic=topics.MODEL_EVALUATED, key=pipeline)
    ) is None:
        assert time.monotonic() < deadline, f"no registry replica consumes {pipeline}'s partition"
        await asyncio.sleep(0.5)
    (name,) = [n for n in ("registry", "registry-2") if stack.processes[n].process.pid == pid]  # type: ignore[union-attr]
    return name


async def test_owner_killed_mid_burst_versions_stay_contiguous(stack: Stack, pipeline_name: str) -> None:
    after = random.Random(SEED).randint(1, BURST // 2)
    burst = await publish_burst(stack, pipeline_name)
    await wait_until_reached(stack.watcher, burst, ModelRegistered, count=after, timeout=300)
    owner = await owner_of(stack, pipeline_name)
    survivor = "registry-2" if owner == "registry" else "registry"
    await asyncio.to_thread(stack.processes[owner].kill)
    killed = time.monotonic()
    # Where evaluate asks for champions still answers: were it the killed replica's alone, arrivals
    # would go to the dead-letter topic after evaluate's retries (issue 10).
    async with httpx.AsyncClient(timeout=5) as client:
        ready = await client.get(f"{stack.settings.registry_base_url}/health/ready")
    assert ready.status_code == 200, ready.text

    took = await wait_until_decided(through(stack, survivor), burst, timeout=400)
    assert_processed_once_in_effect(stack.watcher, burst)
    await assert_registered_versions(through(stack, survivor), burst)
    # The killed replica comes back and reads the same journal: either replica answers the same.
    await asyncio.to_thread(stack.processes[owner].start, timeout=120)
    await assert_registered_versions(through(stack, owner), burst)
    print(
        f"seed {SEED}: killed the owner ({owner}) after {after} registered; all decided "
        f"{took:.1f}s later through {survivor} ({time.monotonic() - killed:.1f}s after the kill)"
    )


async def test_approval_at_either_replica_is_seen_by_both(stack: Stack) -> None:
    pipeline = f"cluster-manual-{uuid.uuid4().hex[:6]}"
    mapping = cheap_spec(pipeline).model_dump(mode="json", exclude_none=True, exclude={"environments"})
    await asyncio.to_thread(stack.specs.apply, PipelineSpec.from_mapping({**mapping, "approval": "manual"}))
    arrival = await publish_data_arrival(
        stack.settings, pipeline=pipeline, data=dataset_csv(7), filename="a.csv"
    )
    await stack.watcher.wait_for(ModelRegistered, correlation_id=arrival.correlation_id, timeout=300)
    owner = await owner_of(stack, pipeline)
    other = "registry-2" if owner == "registry" else "registry"

    # The replica that did not register the version approves it; the owner then refuses a second decision.
    urls = {name: through(stack, name).settings.registry_base_url for name in (owner, other)}
    body = {"comment": "approved at the other replica"}
    async with httpx.AsyncClient(headers=stack.approver_headers, timeout=10) as client:
        approved = await client.post(f"{urls[other]}/v1/groups/{pipeline}/versions/1/approve", json=body)
        assert approved.status_code == 200, approved.text
        again = await client.post(f"{urls[owner]}/v1/groups/{pipeline}/versions/1/reject", json=body)
        assert again.status_code == 409, again.text
        for url in urls.values():
            version = (await client.get(f"{url}/v1/groups/{pipeline}/versions/1")).json()
            assert version["status"] == "Approved", (url, version)
