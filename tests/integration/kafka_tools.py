"""Small helpers for reading what landed on a topic and waiting for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.events import Event
from shared.settings import Settings

E = TypeVar("E", bound=Event)


def new_topic_name() -> str:
    """A topic name unique to one test."""
    return f"conveyor.test.{uuid.uuid4().hex[:12]}"


async def read_records(
    settings: Settings, topic: str, *, count: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of ``topic`` (from the earliest offset), or fail after ``timeout``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=settings.kafka_max_message_bytes * 2,
        max_partition_fetch_bytes=settings.kafka_max_message_bytes,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    assert len(records) >= count, f"{topic}: expected {count} records within {timeout}s, got {len(records)}"
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def wait_for(condition: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """A record's headers as text."""
    return {name: value.decode() for name, value in record.headers}


class EventWatcher:
    """Collects every event published on Conveyor's topics from the moment it starts.

    Partitions are assigned by hand and positioned at their end before any test publishes,
    so nothing published afterwards is missed and nothing older is read.
    """

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self._settings = settings
        self._topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def start(self) -> None:
        """Assign every partition of the topics at its current end, then collect in the background."""
        from aiokafka import TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_bytes=self._settings.kafka_max_message_bytes * 2,
            max_partition_fetch_bytes=self._settings.kafka_max_message_bytes,
        )
        await consumer.start()
        partitions = [
            TopicPartition(topic, partition)
            for topic in self._topics
            for partition in sorted(await _partitions(consumer, topic))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve the positions now, before anyone publishes
            await consumer.position(partition)
        self._consumer = consumer
        self._task = asyncio.create_task(self._collect())

    async def stop(self) -> None:
        """Stop collecting."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    def events(self, event_type: type[E], *, correlation_id: uuid.UUID) -> list[E]:
        """Every collected event of ``event_type`` in the chain of ``correlation_id``."""
        found = []
        for record in self.records:
            if record.topic != event_type.topic:
                continue
            event = event_type.model_validate_json(record.value)
            if event.correlation_id == correlation_id:
                found.append(event)
        return found

    async def wait_for(
        self, *event_types: type[Event], correlation_id: uuid.UUID, timeout: float = 120.0
    ) -> Event:
        """The first event of any of ``event_types`` in the chain, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event_type in event_types:
                found = self.events(event_type, correlation_id=correlation_id)
                if found:
                    return found[0]
            await asyncio.sleep(0.1)
        names = ", ".join(t.__name__ for t in event_types)
        raise AssertionError(f"no {names} for correlation {correlation_id} within {timeout}s")

    async def _collect(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                self.records.extend(batch)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or {0}
