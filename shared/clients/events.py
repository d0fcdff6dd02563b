"""The event side of the SDK: publish a data arrival, follow model approvals."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from shared.events import DataArrived, ModelApproved
from shared.messaging import KafkaEventPublisher, create_broker
from shared.settings import Settings
from shared.storage import minio_client
from shared.telemetry import setup_telemetry
from shared.uris import safe_segment

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


async def publish_data_arrival(
    settings: Settings,
    *,
    pipeline: str,
    data: bytes | Path,
    filename: str | None = None,
    producer: str = "sdk",
) -> DataArrived:
    """Upload ``data`` to the landing bucket under ``<pipeline>/`` and publish ``DataArrived``."""
    if isinstance(data, Path):
        filename = filename or data.name
        data = data.read_bytes()
    if filename is None:
        raise ValueError("name the file (filename=...) when passing bytes")
    suffix = Path(filename).suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"{filename!r}: Conveyor ingests .csv and .parquet files")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = safe_segment(Path(filename).name, what="file name")
    # A fresh key per upload; the dataset version is the hash of the bytes, not the key.
    key = f"{safe_segment(pipeline, what='pipeline')}/{stamp}-{uuid.uuid4().hex[:8]}-{name}"
    await asyncio.to_thread(_upload, settings, key, data)
    event = DataArrived.first(
        producer=producer,
        pipeline=pipeline,
        uri=f"s3://{settings.landing_bucket}/{key}",
        format=_FORMATS[suffix],
    )
    # The arrival starts the trace that every service's spans join (the context rides in Kafka headers).
    telemetry = setup_telemetry(producer, settings)
    broker = create_broker(settings, telemetry=telemetry)
    await broker.connect()
    try:
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
    """Yield ``ModelApproved`` events as they are published (optionally for one pipeline)."""
    consumer = AIOKafkaConsumer(
        ModelApproved.topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async for record in consumer:
            event = ModelApproved.model_validate_json(record.value)
            if pipeline is None or event.pipeline == pipeline:
                yield event
    finally:
        await consumer.stop()


def _upload(settings: Settings, key: str, data: bytes) -> None:
    client = minio_client(settings)
    if not client.bucket_exists(settings.landing_bucket):
        client.make_bucket(settings.landing_bucket)
    client.put_object(settings.landing_bucket, key, io.BytesIO(data), len(data))
