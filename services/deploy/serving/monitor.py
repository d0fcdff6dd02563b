"""The serving side of monitoring: capture to Kafka, feedback joins, live figures and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from faststream.kafka import KafkaBroker

from services.deploy.serving.capture import CaptureFlusher, CaptureQueue, CaptureSource
from services.deploy.serving.feedback import FeedbackBook, UnknownPrediction
from services.deploy.serving.metrics import ServingMetrics
from services.deploy.serving.predict import ModelCard
from services.deploy.settings import DeploySettings
from shared.clients.serving import FeatureValue, FeedbackResult
from shared.events import PredictionsCaptured
from shared.messaging import KafkaEventPublisher, create_broker

log = logging.getLogger("conveyor.serving.monitor")
_FINAL_FLUSH_S = 5.0


class Monitor:
    """Everything a worker records about its predictions; nothing here blocks a request."""

    def __init__(
        self,
        *,
        card: ModelCard,
        settings: DeploySettings,
        correlation_id: UUID,
        metrics: ServingMetrics,
        broker: KafkaBroker | None = None,
    ) -> None:
        self._settings = settings
        self._labels = {"pipeline": card.pipeline, "version": str(card.version)}
        self._metrics = metrics
        self.captures = CaptureQueue(
            size=settings.capture_queue_size, sample_rate=settings.capture_sample_rate
        )
        self.book = FeedbackBook(size=settings.feedback_window, task=card.task, version=card.version)
        self._source = CaptureSource(
            pipeline=card.pipeline, version=card.version, correlation_id=correlation_id
        )
        # A shared worker's models share its one connection to Kafka, which they do not start or stop.
        self._owns_broker = broker is None
        self._broker = broker or create_broker(settings)
        self._flusher = CaptureFlusher(
            self.captures,
            source=self._source,
            publish=self._publish,
            batch_size=settings.capture_batch_size,
            interval_s=settings.capture_flush_interval_s,
            # Half the consumers' limit leaves room for the envelope and headers.
            max_bytes=settings.max_event_bytes // 2,
        )
        self._task: asyncio.Task[None] | None = None

    def observe(self, ids: Sequence[str], rows: Sequence[Mapping[str, Any]], labels: Sequence[Any]) -> None:
        """Remember served predictions for feedback and offer them for capture."""
        dropped_before = self.captures.dropped
        captured = 0
        for prediction_id, row, label in zip(ids, rows, labels, strict=True):
            self.book.remember(prediction_id, label)
            captured += self.captures.offer(prediction_id, row, label)
        self._metrics.predictions.labels(**self._labels).inc(len(ids))
        if captured:
            self._metrics.captured.labels(**self._labels).inc(captured)
        if dropped := self.captures.dropped - dropped_before:
            self._metrics.capture_dropped.labels(**self._labels).inc(dropped)

    def feedback(self, prediction_id: str, actual: FeatureValue) -> FeedbackResult:
        """Join ground truth to its prediction and update the live figures."""
        try:
            result = self.book.join(prediction_id, actual)
        except UnknownPrediction:
            self._metrics.feedback.labels(**self._labels, outcome="unknown").inc()
            raise
        self._record(result)
        return result

    def performance(self) -> dict[str, Any]:
        """Live figures, and what capture has done so far."""
        return {
            "pipeline": self._source.pipeline,
            **self.book.performance(),
            "captured": self.captures.accepted,
            "capture_dropped": self.captures.dropped,
            "capture_published": self._flusher.published,
        }

    async def start(self) -> None:
        """Connect to Kafka and flush captures in the background (serving never waits for either)."""
        self._task = asyncio.create_task(self._run(), name="capture-flusher")

    async def stop(self) -> None:
        """Publish what is still queued (briefly), then disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flusher.flush(), timeout=_FINAL_FLUSH_S)
        if self._owns_broker:
            with contextlib.suppress(Exception):
                await self._broker.stop()

    async def _run(self) -> None:
        while self._owns_broker:
            try:
                await self._broker.start()
                break
            except Exception as error:
                log.warning("Kafka not reachable for capture (%r); retrying", error)
                await asyncio.sleep(self._settings.capture_flush_interval_s)
        await self._flusher.run()

    async def _publish(self, event: PredictionsCaptured) -> None:
        await KafkaEventPublisher(self._broker).publish(event)

    def _record(self, result: FeedbackResult) -> None:
        outcome = "matched"
        self._metrics.feedback.labels(**self._labels, outcome=outcome).inc()
        figures = self.book.performance()
        if result.correct is not None:
            self._metrics.feedback_correct.labels(**self._labels).inc(int(result.correct))
            self._metrics.live_accuracy.labels(**self._labels).set(figures["accuracy"])
        if result.absolute_error is not None:
            self._metrics.feedback_absolute_error.labels(**self._labels).inc(result.absolute_error)
            self._metrics.live_mae.labels(**self._labels).set(figures["mae"])
