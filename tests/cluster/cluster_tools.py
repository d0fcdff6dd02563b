"""What the cluster suite asks the Kafka cluster: leaders, in-sync replicas, who consumes what; and kills."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.partitioner import DefaultPartitioner

from infra import process
from infra.kafka import broker_server, brokers
from shared.messaging import client_options
from shared.settings import Settings

OFFSETS_TOPIC = "__consumer_offsets"


async def describe(settings: Settings, topics: list[str]) -> list[dict[str, Any]]:
    """Each partition of ``topics``: topic, partition, leader, replicas, isr."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000, **client_options(settings)
    )
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [
        {"topic": t["topic"], **{k: p[k] for k in ("partition", "leader", "replicas", "isr")}}
        for t in described
        for p in t["partitions"]
    ]


async def coordinator(settings: Settings) -> int:
    """The broker that leads the (one-partition) offsets topic: every group's coordinator."""
    (offsets,) = await describe(settings, [OFFSETS_TOPIC])
    return int(offsets["leader"])


def kill_broker(settings: Settings, node_id: int) -> None:
    """SIGKILL one broker: no controlled shutdown, no leadership handed over."""
    server = broker_server(settings, brokers(settings)[node_id - 1])
    pid = process.running_pid(server)
    assert pid is not None, f"broker {node_id} is not running"
    os.kill(pid, signal.SIGKILL)
    assert process.wait_until(lambda: not process.pid_alive(pid), timeout=10), f"broker {node_id} lives on"


async def wait_in_sync(settings: Settings, topics: list[str], *, node_id: int, timeout: float) -> float:
    """Poll until ``node_id`` is back in the in-sync replicas of every partition it holds; return seconds."""
    started = time.monotonic()
    while True:
        partitions = await describe(settings, topics)
        behind = [p for p in partitions if node_id in p["replicas"] and node_id not in p["isr"]]
        if partitions and not behind:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"broker {node_id} not in sync within {timeout:.0f}s: {behind[:5]}")
        await asyncio.sleep(0.5)


async def consumer_pid(settings: Settings, *, group: str, topic: str, key: str) -> int | None:
    """The pid of the group member consuming ``key``'s partition of ``topic`` (None: none right now).

    Keys go to partitions by the default (murmur2) partitioner, as the producer placed them.
    """
    ids = sorted(p["partition"] for p in await describe(settings, [topic]))
    wanted = DefaultPartitioner()(key.encode(), ids, ids)
    members = await group_assignment(settings, group=group, topic=topic)
    return next((pid for pid, partitions in members.items() if wanted in partitions), None)


async def group_assignment(settings: Settings, *, group: str, topic: str) -> dict[int, set[int]]:
    """Each member's pid and the partitions of ``topic`` assigned to it.

    Services name themselves ``conveyor-<host>-<pid>`` (shared.messaging.broker).
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000, **client_options(settings)
    )
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members: dict[int, set[int]] = {}
    for described in response.to_object()["groups"]:
        for member in described["members"]:
            if not member["member_assignment"]:
                continue  # joined, not yet given partitions
            decoded = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            pid = int(member["client_id"].rsplit("-", 1)[-1])
            members.setdefault(pid, set()).update(
                p for t, parts in decoded.assignment if t == topic for p in parts
            )
    return members
