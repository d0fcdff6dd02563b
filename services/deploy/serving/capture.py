"""Prediction capture: sampled into a bounded queue on the request path, published in batches later.

A request never waits for Kafka: when the queue is full the capture is dropped and counted.
BentoML's own ``bentoml.monitor`` writes each record synchronously to a log file or OTLP; here
the records must reach Kafka as typed events, so capture is this small queue instead.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from shared.events import CapturedPrediction, PredictionsCaptured

log = logging.getLogger("conveyor.serving.capture")

Publish = Callable[[PredictionsCaptured], Awaitable[None]]


@dataclass(frozen=True)
class Captured:
    """One served prediction, kept raw until it is published (cheap on the request path)."""

    prediction_id: str
    captured_at: datetime
    features: Mapping[str, Any]
    prediction: Any


class CaptureQueue:
    """A bounded, thread-safe queue that samples what it is offered and drops (counting) when full."""

    def __init__(self, *, size: int, sample_rate: float, sample: Callable[[], float] = random.random) -> None:
        self._queue: queue.Queue[Captured] = queue.Queue(maxsize=size)
        self._sample_rate = sample_rate
        self._sample = sample
        self.dropped = 0
        self.accepted = 0

    def offer(self, prediction_id: str, features: Mapping[str, Any], prediction: Any) -> bool:
        """Queue one prediction if it is sampled and there is room; never blocks."""
        if self._sample_rate < 1.0 and self._sample() >= self._sample_rate:
            return False
        try:
            self._queue.put_nowait(Captured(prediction_id, datetime.now(UTC), features, prediction))
        except queue.Full:
            self.dropped += 1
            return False
        self.accepted += 1
        return True

    def take(self, limit: int) -> list[Captured]:
        """Up to ``limit`` queued captures, oldest first."""
        taken: list[Captured] = []
        while len(taken) < limit:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return taken

    def __len__(self) -> int:
        return self._queue.qsize()


@dataclass(frozen=True)
class CaptureSource:
    """Which served model the captures belong to, for the events' envelope."""

    pipeline: str
    version: int
    correlation_id: UUID
    producer: str = "serving"


def to_events(
    captured: list[Captured], *, source: CaptureSource, max_bytes: int
) -> list[PredictionsCaptured]:
    """Captures as events, split so that none exceeds ``max_bytes`` on the wire."""
    event = PredictionsCaptured(
        correlation_id=source.correlation_id,
        producer=source.producer,
        pipeline=source.pipeline,
        version=source.version,
        predictions=[
            CapturedPrediction(
                prediction_id=c.prediction_id,
                captured_at=c.captured_at,
                features=dict(c.features),
                prediction=c.prediction,
            )
            for c in captured
        ],
    )
    if len(captured) <= 1 or len(event.model_dump_json()) <= max_bytes:
        return [event]
    half = len(captured) // 2
    return [
        *to_events(captured[:half], source=source, max_bytes=max_bytes),
        *to_events(captured[half:], source=source, max_bytes=max_bytes),
    ]


class CaptureFlusher:
    """Publishes queued captures in batches from a background task, retrying while Kafka is away."""

    def __init__(
        self,
        captures: CaptureQueue,
        *,
        source: CaptureSource,
        publish: Publish,
        batch_size: int,
        interval_s: float,
        max_bytes: int,
    ) -> None:
        self._captures = captures
        self._source = source
        self._publish = publish
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._max_bytes = max_bytes
        self._pending: list[PredictionsCaptured] = []
        self.published = 0

    async def run(self) -> None:
        """Flush forever (until cancelled)."""
        while True:
            if len(self._captures) < self._batch_size and not self._pending:
                await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except Exception as error:  # Kafka away: keep the batch, try again later
                log.warning("publishing captured predictions failed (%r); retrying", error)
                await asyncio.sleep(self._interval_s)

    async def flush(self) -> None:
        """Publish what is queued now (and whatever failed before)."""
        if not self._pending:
            batch = self._captures.take(self._batch_size)
            if batch:
                self._pending = to_events(batch, source=self._source, max_bytes=self._max_bytes)
        while self._pending:
            await self._publish(self._pending[0])
            self.published += len(self._pending.pop(0).predictions)
