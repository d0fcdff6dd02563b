"""SIGKILL one broker of three mid-burst: each arrival still gets one version; the broker catches up."""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from infra.kafka import start_broker
from shared.events import ALL_EVENTS, ModelRegistered, ModelTrained
from tests.cluster.cluster_tools import coordinator, describe, kill_broker, wait_in_sync
from tests.e2e.conftest import Stack
from tests.faults.burst import (
    BURST,
    assert_one_artifact_per_run,
    assert_processed_once_in_effect,
    assert_registered_versions,
    publish_burst,
    reached,
    wait_until_decided,
    wait_until_reached,
)

pytestmark = pytest.mark.infra

SEED = int(os.environ.get("CONVEYOR_FAULTS_SEED", time.time_ns() % 1_000_000))
TOPICS = [event.topic for event in ALL_EVENTS]


async def test_topics_are_replicated_with_two_in_sync(stack: Stack) -> None:
    partitions = await describe(stack.settings, TOPICS)
    assert {len(p["replicas"]) for p in partitions} == {3}, partitions
    assert len(partitions) == len(TOPICS) * stack.settings.kafka_partitions


async def test_killed_broker_loses_and_duplicates_nothing(stack: Stack, pipeline_name: str) -> None:
    rng = random.Random(SEED)
    after = rng.randint(1, BURST // 4)
    burst = await publish_burst(stack, pipeline_name)
    await wait_until_reached(stack.watcher, burst, ModelTrained, count=after, timeout=300)
    # The coordinator of every consumer group: its death moves groups, offsets and partition leaders.
    victim = await coordinator(stack.settings)
    await asyncio.to_thread(kill_broker, stack.settings, victim)
    done_at_kill = reached(stack.watcher, burst, ModelRegistered)

    # Two of three brokers keep the flow going: more arrivals get registered while one is dead.
    await wait_until_reached(
        stack.watcher, burst, ModelRegistered, count=min(BURST, done_at_kill + 3), timeout=300
    )
    await asyncio.to_thread(start_broker, stack.settings, victim, timeout=180)
    rejoined = time.monotonic()

    await wait_until_decided(stack, burst, timeout=400)
    assert_processed_once_in_effect(stack.watcher, burst)
    await assert_registered_versions(stack, burst)
    assert_one_artifact_per_run(stack, burst)
    caught_up = await wait_in_sync(stack.settings, TOPICS, node_id=victim, timeout=180)
    print(
        f"seed {SEED}: killed broker {victim} (the coordinator) after {after} trained; "
        f"{done_at_kill} registered at the kill; back in sync {time.monotonic() - rejoined:.1f}s after "
        f"its restart ({caught_up:.1f}s after the burst was decided)"
    )
