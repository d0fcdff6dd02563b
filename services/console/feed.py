"""The console's Kafka reader: every event topic from its beginning, folded into the timeline.

The partitions are assigned by hand and read from their first offset at every start, so the
console rebuilds what it shows from Kafka alone and commits nothing. Browsers hear of changes
through ``Changes``, which the server-sent-events route streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from services.console.timeline import Timeline
from shared.events import EVENT_BY_TOPIC
from shared.messaging import client_options, stop_consumer
from shared.settings import Settings

log = logging.getLogger("conveyor.console")
_TRACEPARENT = "traceparent"


class Changes:
    """Fans each batch of changed keys out to every listening browser."""

    def __init__(self) -> None:
        self._listeners: set[asyncio.Queue[set[str]]] = set()

    def publish(self, keys: set[str]) -> None:
        """Tell every listener what changed (a slow listener loses nothing but old detail)."""
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(keys)

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[set[str]]]:
        """A queue of changed keys for as long as the block runs."""
        queue: asyncio.Queue[set[str]] = asyncio.Queue(maxsize=64)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)


class Feed:
    """Reads the event topics into ``timeline`` and announces each change."""

    def __init__(self, settings: Settings, timeline: Timeline, changes: Changes) -> None:
        self._settings = settings
        self._timeline = timeline
        self._changes = changes
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        """Assign every partition at its first offset and read in the background."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            enable_auto_commit=False,
            fetch_max_bytes=self._settings.kafka_max_message_bytes * 2,
            max_partition_fetch_bytes=self._settings.kafka_max_message_bytes,
            **client_options(self._settings),  # its own principal when Kafka requires SASL
        )
        await consumer.start()
        await consumer._client.force_metadata_update()
        partitions = [
            TopicPartition(topic, partition)
            for topic in EVENT_BY_TOPIC
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        # An explicit seek: seek_to_beginning can lose a race with the reset that assign() starts.
        for partition, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(partition, offset)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(ends), name="console-feed")

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await stop_consumer(self._consumer)

    async def _run(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            changed: set[str] = set()
            for records in batches.values():
                for record in records:
                    changed |= self._fold(record)
            if changed:
                self._changes.publish(changed)
            if not self.caught_up.is_set() and all(
                [await consumer.position(tp) >= end for tp, end in ends.items()]
            ):
                log.info("console read %d arrivals from Kafka", len(self._timeline.arrivals))
                self.caught_up.set()

    def _fold(self, record: ConsumerRecord[bytes, bytes]) -> set[str]:
        kind = EVENT_BY_TOPIC.get(record.topic)
        if kind is None or record.value is None:
            return set()
        try:
            event = kind.model_validate_json(record.value)
        except ValidationError:  # a malformed message: its dead-letter topic shows it
            return set()
        return self._timeline.add(event, trace_id=trace_id_of(record))


def trace_id_of(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The trace id in a record's W3C ``traceparent`` header (``00-<trace id>-<span id>-<flags>``)."""
    for name, value in record.headers or ():
        if name == _TRACEPARENT:
            parts = value.decode(errors="replace").split("-")
            if len(parts) == 4 and len(parts[1]) == 32:
                return parts[1]
    return None
