"""Kafka plumbing shared by every service: broker, publisher, safe subscriber, dead letters."""

from shared.messaging.admin import ensure_topics
from shared.messaging.broker import create_broker
from shared.messaging.consumer import RetryPolicy, subscribe
from shared.messaging.dead_letter import DeadLetter
from shared.messaging.errors import PermanentError, TransientError, is_transient
from shared.messaging.publisher import EventPublisher, KafkaEventPublisher
from shared.messaging.security import client_options
from shared.messaging.stopping import stop_consumer

__all__ = [
    "DeadLetter",
    "EventPublisher",
    "KafkaEventPublisher",
    "PermanentError",
    "RetryPolicy",
    "TransientError",
    "client_options",
    "create_broker",
    "ensure_topics",
    "is_transient",
    "stop_consumer",
    "subscribe",
]
