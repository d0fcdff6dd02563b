"""Safe consumption, once for every service.

FastStream acknowledges Kafka messages before the handler runs unless told otherwise, and has
no dead-letter topic; aiokafka starts new groups at the latest offset. Here instead:
a message is acknowledged only after its outputs are published or it is dead-lettered;
permanent errors are dead-lettered at once; transient ones are retried with backoff within
a budget; new consumer groups start from the earliest offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from shared.events import Event
from shared.messaging.dead_letter import DeadLetter, Reason, publish_dead_letter
from shared.messaging.errors import is_transient
from shared.messaging.publisher import EventPublisher
from shared.settings import Settings

E = TypeVar("E", bound=Event)
Outputs = Event | Sequence[Event] | None
Handler = Callable[[E], Awaitable[Outputs]]

log = logging.getLogger("conveyor.messaging")


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, transient failures are retried."""

    attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy configured by ``CONVEYOR_RETRY_*``."""
        return cls(
            attempts=settings.retry_attempts,
            initial_backoff_s=settings.retry_initial_backoff_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


class _Rejected(Exception):
    """A message that goes to the dead-letter topic without running the handler."""

    def __init__(self, reason: Reason, error: BaseException) -> None:
        super().__init__(str(error))
        self.reason = reason
        self.error = error


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    # Decoding is ours to do, so a malformed body reaches the dead-letter topic
    # instead of failing inside FastStream before any handler sees it.
    return message.body


def subscribe(
    broker: KafkaBroker,
    *,
    event_type: type[E],
    handler: Handler[E],
    group_id: str,
    publisher: EventPublisher,
    settings: Settings,
    topic: str | None = None,
) -> None:
    """Consume ``event_type`` from its topic (or ``topic``) with ``handler``, safely."""
    consumer = _SafeConsumer(
        event_type=event_type,
        handler=handler,
        group_id=group_id,
        broker=broker,
        publisher=publisher,
        retry=RetryPolicy.from_settings(settings),
        max_event_bytes=settings.max_event_bytes,
    )

    async def consume(body: bytes) -> None:
        await consumer.consume(broker.context.get("message"))

    # The broker does not cast bodies (create_broker sets apply_types=False): decoding is the safe
    # consumer's job. The declared type is what FastStream's AsyncAPI document shows as the payload.
    consume.__annotations__ = {"body": event_type, "return": None}

    broker.subscriber(
        topic or event_type.topic,
        group_id=group_id,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        max_poll_interval_ms=settings.max_poll_interval_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        decoder=_raw_body,
        title=f"{topic or event_type.topic}:{group_id}",
        description=f"{event_type.__name__} → {handler.__name__}: {handler.__doc__ or ''}".strip(),
    )(consume)


@dataclass
class _SafeConsumer:
    event_type: type[Event]
    handler: Handler[Any]
    group_id: str
    broker: KafkaBroker
    publisher: EventPublisher
    retry: RetryPolicy
    max_event_bytes: int

    async def consume(self, message: Any) -> None:
        """Process one message to a definite end (outputs published, or dead-lettered), then ack."""
        try:
            event = self._decode(message)
        except _Rejected as rejected:
            await self._dead_letter(message, rejected.reason, rejected.error, attempts=0)
        else:
            await self._handle(message, event)
        await message.ack()

    def _decode(self, message: Any) -> Event:
        body: bytes = message.body
        if len(body) > self.max_event_bytes:
            size_error = ValueError(f"{len(body)} bytes exceeds the {self.max_event_bytes}-byte limit")
            raise _Rejected("too_large", size_error)
        try:
            event = self.event_type.model_validate_json(body)
        except ValidationError as error:
            raise _Rejected("invalid_payload", error) from error
        key = message.raw_message.key
        if key != event.key:
            key_error = ValueError(f"message key {key!r} is not the event's pipeline {event.key!r}")
            raise _Rejected("wrong_key", key_error)
        return event

    async def _handle(self, message: Any, event: Event) -> None:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                outputs = await self.handler(event)
            except Exception as error:
                if not is_transient(error):
                    log.exception("handler %s failed permanently", self.handler.__name__)
                    # A refusal's own event (e.g. DeploymentFailed) first, so whoever follows sees why.
                    await self._publish_all(getattr(error, "outputs", ()))
                    await self._dead_letter(message, "processing_error", error, attempts=attempt)
                    return
                if attempt == self.retry.attempts:
                    log.error("handler %s: retries exhausted: %r", self.handler.__name__, error)
                    await self._dead_letter(message, "retry_exhausted", error, attempts=attempt)
                    return
                delay = self.retry.backoff(attempt)
                log.warning(
                    "handler %s attempt %d failed (%r); retrying in %.1fs",
                    self.handler.__name__,
                    attempt,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                await self._publish_all(_as_sequence(outputs))
                return

    async def _publish_all(self, outputs: Sequence[Event]) -> None:
        # Kafka being away is no fault of the message: wait for it rather than dead-letter.
        for output in outputs:
            await self._until_done(partial(self.publisher.publish, output))

    async def _dead_letter(
        self, message: Any, reason: Reason, error: BaseException, *, attempts: int
    ) -> None:
        record = message.raw_message
        letter = DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            group_id=self.group_id,
            key=record.key,
            value=message.body,
            original_headers={name: value.decode(errors="replace") for name, value in record.headers or ()},
            reason=reason,
            error_type=type(error).__name__,
            error=str(error),
            attempts=attempts,
        )
        log.warning(
            "dead-lettering %s[%d]@%d: %s (%s)",
            letter.source_topic,
            letter.partition,
            letter.offset,
            reason,
            letter.error_type,
        )
        await self._until_done(partial(publish_dead_letter, self.broker, letter))

    async def _until_done(self, action: Callable[[], Awaitable[None]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await action()
                return
            except Exception as error:
                delay = self.retry.backoff(min(attempt, self.retry.attempts))
                log.warning("publishing failed (%r); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)


def _as_sequence(outputs: Outputs) -> Sequence[Event]:
    if outputs is None:
        return ()
    if isinstance(outputs, Event):
        return (outputs,)
    return outputs
