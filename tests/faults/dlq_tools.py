"""Dead letters as the fault tests see them: collected records, their headers, the CLI that replays them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiokafka import ConsumerRecord

from shared.cli.dlq import REASONS, UNKNOWN_REASON, replay_group
from shared.clients.events import EventWatcher
from shared.messaging.dead_letter import HEADER_PREFIX
from shared.settings import Settings
from shared.topics import dead_letter_topic
from tests.integration.kafka_tools import start_group_at_end

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


async def position_replay_groups(settings: Settings, topics: list[str]) -> None:
    """Mark the dead letters already on ``topics``' dead-letter topics (earlier runs') as replayed."""
    dead = [dead_letter_topic(topic) for topic in topics]
    for reason in (*REASONS, UNKNOWN_REASON):
        group = replay_group(settings.consumer_group_prefix, reason)
        await start_group_at_end(settings, group_id=group, topics=dead)


def letter_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """The ``conveyor-dlq-*`` headers of a dead-letter record, without the prefix."""
    return {
        name.removeprefix(HEADER_PREFIX): value.decode(errors="replace")
        for name, value in record.headers
        if name.startswith(HEADER_PREFIX)
    }


def letters_for(watcher: EventWatcher, topic: str, *, key: bytes | None = None) -> list[ConsumerRecord]:
    """The dead letters collected from ``topic`` (optionally only those with ``key``)."""
    return [
        record
        for record in watcher.records
        if record.topic == dead_letter_topic(topic) and (key is None or record.key == key)
    ]


def conveyor(*args: str, settings: Settings, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``conveyor`` CLI against the servers and consumer-group prefix of ``settings``."""
    env = {
        **os.environ,
        "CONVEYOR_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "CONVEYOR_CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix,
        "CONVEYOR_MINIO_ENDPOINT": settings.s3_endpoint,
    }
    return subprocess.run(
        [CONVEYOR, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
