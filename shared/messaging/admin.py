"""Create topics up front, so consumers never wait on a topic that does not exist yet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.messaging.security import client_options
from shared.settings import Settings
from shared.topics import dead_letter_topic

_NO_ERROR = 0
_TOPIC_ALREADY_EXISTS = 36
# On a cluster a write is acknowledged (acks=all) once two replicas hold it: one broker may die.
_CLUSTER_MIN_INSYNC = "2"
# A new topic's partitions get leaders a moment after CreateTopics answers (on a cluster, after
# the controller's decision reaches every broker); until then a consumer sees no partitions.
_LEADERS_TIMEOUT_S = 30.0


async def ensure_topics(settings: Settings, names: Iterable[str], *, with_dead_letters: bool = True) -> None:
    """Create ``names`` (and their dead-letter topics) that do not exist yet.

    New topics get ``kafka_partitions`` partitions and min(3, brokers) replicas; topics that
    exist are left as they are (an existing single-broker state keeps its partition counts).
    """
    wanted = set(names)
    if with_dead_letters:
        wanted |= {dead_letter_topic(name) for name in wanted}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **client_options(settings))
    await admin.start()
    try:
        missing = wanted - set(await admin.list_topics())
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=settings.kafka_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        topic_configs=_topic_configs(settings),
                    )
                    for name in sorted(missing)
                ]
            )
            for name, code, *_ in response.topic_errors:
                # Another service may have created the topic since list_topics.
                if code not in (_NO_ERROR, _TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {name!r}: Kafka error code {code}")
            await _await_leaders(admin, sorted(missing))
    finally:
        await admin.close()


async def _await_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Return once every partition of ``names`` has a leader (or raise after a time-out)."""
    deadline = time.monotonic() + _LEADERS_TIMEOUT_S
    while True:
        described = await admin.describe_topics(names)
        led = [t for t in described if t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])]
        if len(led) == len(names):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics without partition leaders after {_LEADERS_TIMEOUT_S:.0f}s: {names}")
        await asyncio.sleep(0.2)


def _topic_configs(settings: Settings) -> dict[str, str]:
    if settings.kafka_replication_factor < 3:
        return {}
    return {"min.insync.replicas": _CLUSTER_MIN_INSYNC}
