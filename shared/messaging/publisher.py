"""The event publisher port and its Kafka implementation."""

from __future__ import annotations

from typing import Protocol

from faststream.kafka import KafkaBroker

from shared.events import Event

EVENT_TYPE_HEADER = "conveyor-event-type"


class EventPublisher(Protocol):
    """Publishes events; the port handlers and work code depend on."""

    async def publish(self, event: Event, *, topic: str | None = None) -> None:
        """Publish ``event`` on its topic (or ``topic``), keyed by its pipeline."""
        ...


def encode(event: Event) -> bytes:
    """The wire form of an event: its JSON."""
    return event.model_dump_json().encode()


class KafkaEventPublisher:
    """Publishes events as JSON on their topics, keyed by pipeline so one model's events stay ordered."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def publish(self, event: Event, *, topic: str | None = None) -> None:
        """Publish ``event`` and wait for the broker's acknowledgement."""
        await self._broker.publish(
            encode(event),
            topic=topic or event.topic,
            key=event.key,
            headers={"content-type": "application/json", EVENT_TYPE_HEADER: type(event).__name__},
            correlation_id=str(event.correlation_id),
        )
