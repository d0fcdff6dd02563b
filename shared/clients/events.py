"""The event side of the SDK: publish a data arrival, follow model approvals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from shared.approvals import ApprovalNotTrusted, ApprovalVerifier
from shared.clients.upload import UploadProgress, upload_file
from shared.events import DataArrived, Event, ModelApproved
from shared.messaging import KafkaEventPublisher, client_options, create_broker, stop_consumer
from shared.settings import Settings
from shared.storage import ArtifactStore
from shared.telemetry import setup_telemetry

E = TypeVar("E", bound=Event)
log = logging.getLogger(__name__)
_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


async def publish_data_arrival(
    settings: Settings,
    *,
    pipeline: str,
    data: bytes | Path,
    filename: str | None = None,
    producer: str = "sdk",
    progress: UploadProgress | None = None,
) -> DataArrived:
    """Upload ``data`` to the landing bucket under ``<pipeline>/`` and publish ``DataArrived``.

    A file is streamed from disk in parallel multipart parts; ``progress`` (such as
    ``shared.clients.upload.ProgressBar``) hears of every part read.
    """
    if isinstance(data, Path):
        filename = filename or data.name
    if filename is None:
        raise ValueError("name the file (filename=...) when passing bytes")
    suffix = Path(filename).suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{filename!r}: Conveyor ingests .csv and .parquet files")
    # The arrival starts the trace that every service's spans join (the context rides in Kafka headers).
    telemetry = setup_telemetry(producer, settings)
    broker = create_broker(settings, telemetry=telemetry)
    try:
        # Kafka's handshake runs beside the upload rather than after it.
        uploaded, connected = await asyncio.gather(
            asyncio.to_thread(
                upload_file, settings, pipeline=pipeline, filename=filename, data=data, progress=progress
            ),
            broker.connect(),
            return_exceptions=True,
        )
        for outcome in (uploaded, connected):
            if isinstance(outcome, BaseException):
                raise outcome
        # Stamped once the file is stored and the broker connected: the arrival occurs when it is
        # announced, so the time to the next event is ingest's, not this client's.
        uri = cast(str, uploaded)
        event = DataArrived.first(producer=producer, pipeline=pipeline, uri=uri, format=_FORMATS[suffix])
        tracer = telemetry.tracer_provider.get_tracer("conveyor.sdk")
        attributes = {"conveyor.pipeline": pipeline, "conveyor.correlation_id": str(event.correlation_id)}
        with tracer.start_as_current_span("data arrival", attributes=attributes):
            await KafkaEventPublisher(broker).publish(event)
    finally:
        await broker.stop()
        telemetry.shutdown()
    return event


async def approved_models(
    settings: Settings, *, pipeline: str | None = None, from_beginning: bool = False
) -> AsyncIterator[ModelApproved]:
    """Yield ``ModelApproved`` events as they are published (optionally for one pipeline).

    Only approvals the registry signed are yielded, as the deploy service trusts only those: a
    record that is not a valid approval, or one the registry's key did not sign, is skipped with a
    warning naming its partition and offset (the topic is open to any client Kafka lets write).
    """
    verifier = ApprovalVerifier(ArtifactStore.from_settings(settings), bucket=settings.artifacts_bucket)
    consumer = AIOKafkaConsumer(
        ModelApproved.topic,
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async for record in consumer:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            try:
                event = ModelApproved.model_validate_json(record.value or b"")
            except ValidationError as error:
                log.warning("skipped %s: not a ModelApproved (%s)", where, error.errors()[0]["msg"])
                continue
            if pipeline is not None and event.pipeline != pipeline:
                continue
            try:
                await asyncio.to_thread(verifier.verify, event)  # the key's first read is a GET
            except ApprovalNotTrusted as error:
                log.warning("skipped %s: %s", where, error)
                continue
            yield event
    finally:
        await stop_consumer(consumer)


def upload_to_landing(settings: Settings, pipeline: str, path: Path) -> str:
    """Upload a local file to the landing bucket under ``<pipeline>/``; returns its URI."""
    return upload_file(settings, pipeline=pipeline, filename=path.name, data=path)


class EventWatcher:
    """Collects every event published on the given topics from the moment it starts (tests, tools).

    Partitions are assigned by hand and positioned at their end before any test publishes,
    so nothing published afterwards is missed and nothing older is read.
    """

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self._settings = settings
        self._topics = topics
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._decoded: dict[int, Event | None] = {}  # index in records → its event, once decoded

    async def start(self) -> None:
        """Assign every partition of the topics at its current end, then collect in the background."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            **client_options(self._settings),
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
            await stop_consumer(self._consumer)

    def of(
        self, kind: type[E], *, pipeline: str | None = None, where: Callable[[E], bool] = lambda _: True
    ) -> list[E]:
        """Collected events of one kind (and pipeline) that satisfy ``where``, in arrival order."""
        found = []
        for index, record in enumerate(self.records):
            if record.topic != kind.topic:
                continue
            if index not in self._decoded:
                try:
                    self._decoded[index] = kind.model_validate_json(record.value)
                except ValueError:  # a malformed record (it went to the dead-letter topic): no event
                    self._decoded[index] = None
            event = self._decoded[index]
            if isinstance(event, kind) and pipeline in (None, event.pipeline) and where(event):
                found.append(event)
        return found

    def events(self, event_type: type[E], *, correlation_id: uuid.UUID) -> list[E]:
        """Every collected event of ``event_type`` in the chain of ``correlation_id``."""
        return self.of(event_type, where=lambda event: event.correlation_id == correlation_id)

    async def wait_until(
        self,
        kind: type[E],
        *,
        pipeline: str | None = None,
        where: Callable[[E], bool] = lambda _: True,
        count: int = 1,
        timeout: float = 60.0,
    ) -> list[E]:
        """Wait until ``count`` events of ``kind`` (and pipeline) satisfy ``where``; return them all."""
        deadline = time.monotonic() + timeout
        while len(found := self.of(kind, pipeline=pipeline, where=where)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} {kind.__name__} within {timeout}s; found {found}")
            await asyncio.sleep(0.05)
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
