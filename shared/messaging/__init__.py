"""Kafka plumbing shared by every service: broker, publisher, safe subscriber, dead letters."""

from shared.messaging.admin import ensure_topics
from shared.messaging.broker import create_broker
from shared.messaging.consumer import RetryPolicy, subscribe
from shared.messaging.dead_letter import DeadLetter
from shared.messaging.errors import PermanentError, TransientError, is_transient
from shared.messaging.publisher import EventPublisher, KafkaEventPublisher

__all__ = [
    "DeadLetter",
    "EventPublisher",
    "KafkaEventPublisher",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
    "create_broker",
    "ensure_topics",
    "is_transient",
    "subscribe",
]
