"""SIGKILL each service at a random point of a 20-arrival burst, restart it: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable

import httpx
import pytest

from shared.clients.events import EventWatcher
from shared.clients.serving import PredictionClient
from shared.events import (
    ALL_EVENTS,
    DatasetValidated,
    DeploymentFailed,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelTrained,
)
from tests.e2e.conftest import SERVICES, Stack
from tests.faults.burst import (
    BURST,
    Burst,
    assert_no_dead_letters,
    assert_one_artifact_per_run,
    assert_processed_once_in_effect,
    assert_registered_versions,
    feature_row,
    publish_burst,
    reached,
    wait_until_decided,
    wait_until_reached,
)

pytestmark = pytest.mark.infra

# A service is killed once this many arrivals of the burst got this far: it is then mid-burst.
KILL_AFTER: dict[str, type[Event]] = {
    "ingest": DatasetValidated,
    "train": ModelTrained,
    "evaluate": ModelEvaluated,
    "registry": ModelRegistered,
    "deploy": ModelApproved,
}
SEED = int(os.environ.get("CONVEYOR_FAULTS_SEED", time.time_ns() % 1_000_000))


@pytest.mark.parametrize("service", SERVICES)
async def test_killed_service_loses_and_duplicates_nothing(
    stack: Stack,
    dead_letters: EventWatcher,
    pipeline_name: str,
    service: str,
    figures: Callable[[str, object], None],
) -> None:
    rng = random.Random(f"{SEED}-{service}")
    deploy = service == "deploy"
    # Deploy is killed during a rollout (its slow part), the others at a random arrival of the burst.
    after = 1 if deploy else rng.randint(1, BURST // 2)
    delay = rng.uniform(0.0, 4.0 if deploy else 1.0)
    burst = await publish_burst(stack, pipeline_name, realtime=deploy)

    await wait_until_reached(stack.watcher, burst, KILL_AFTER[service], count=after, timeout=180)
    await asyncio.sleep(delay)  # the random point itself, not a wait for a condition
    done_at_kill = reached(stack.watcher, burst, KILL_AFTER[service])
    process = stack.processes[service]
    await asyncio.to_thread(process.kill)
    restarted = time.monotonic()
    await asyncio.to_thread(process.start, timeout=120)
    back_in = time.monotonic() - restarted

    took = await wait_until_decided(stack, burst, timeout=300)
    delivery = assert_processed_once_in_effect(stack.watcher, burst)
    await assert_registered_versions(stack, burst)
    assert_one_artifact_per_run(stack, burst)
    deployed = await assert_each_approval_deployed_once(stack, burst) if deploy else ""
    assert_no_dead_letters(dead_letters, burst, [event.topic for event in ALL_EVENTS])
    figures(
        "killed",
        f"seed {SEED}, after {after} {KILL_AFTER[service].__name__} + {delay:.1f}s "
        f"({done_at_kill} arrivals past it); restart {back_in:.1f}s; all decided "
        f"{took:.1f}s after the restart; {delivery.repeats} redelivered records of {delivery.records}"
        f"{deployed}",
    )


async def assert_each_approval_deployed_once(stack: Stack, burst: Burst) -> str:
    """Every approved version got one ModelDeployed, and the endpoint serves the last one."""
    approved = reached(stack.watcher, burst, ModelApproved)
    took = await wait_until_reached(
        stack.watcher, burst, ModelDeployed, DeploymentFailed, count=approved, timeout=300
    )
    failures = []
    for correlation in burst.correlations:
        if not stack.watcher.events(ModelApproved, correlation_id=correlation):
            continue
        outcomes = {
            (type(e).__name__, e.event_id)
            for t in (ModelDeployed, DeploymentFailed)
            for e in stack.watcher.events(t, correlation_id=correlation)
        }
        if len(outcomes) != 1 or next(iter(outcomes))[0] != "ModelDeployed":
            failures.append((str(correlation), sorted(map(str, outcomes))))
    assert not failures, f"approvals not deployed exactly once: {failures}"

    last = max(
        e.version for c in burst.correlations for e in stack.watcher.events(ModelApproved, correlation_id=c)
    )
    async with httpx.AsyncClient(base_url=stack.settings.deploy_base_url, timeout=10) as client:
        view = (await client.get(f"/v1/deployments/{burst.pipeline}")).json()
    assert view["active_version"] == last, view
    assert view["serving_version"] == last, view
    with PredictionClient(view["endpoint_url"]) as client:
        assert client.predict(feature_row()).version == last
    return f"; {approved} approvals each deployed once, the last {took:.1f}s after the decisions"
