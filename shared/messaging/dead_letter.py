"""What a dead-letter record carries: the original bytes, and why they could not be processed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from faststream.kafka import KafkaBroker

from shared.topics import dead_letter_topic

Reason = Literal["invalid_payload", "too_large", "wrong_key", "processing_error", "retry_exhausted"]

HEADER_PREFIX = "conveyor-dlq-"
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed."""

    source_topic: str
    partition: int
    offset: int
    group_id: str
    key: bytes | None
    value: bytes
    original_headers: dict[str, str]
    reason: Reason
    error_type: str
    error: str
    attempts: int

    @property
    def topic(self) -> str:
        """The dead-letter topic this record goes to."""
        return dead_letter_topic(self.source_topic)

    def headers(self) -> dict[str, str]:
        """Kafka headers describing the failure (the original headers travel as JSON)."""
        return {
            f"{HEADER_PREFIX}reason": self.reason,
            f"{HEADER_PREFIX}error-type": self.error_type,
            f"{HEADER_PREFIX}error": self.error[:_MAX_ERROR_CHARS],
            f"{HEADER_PREFIX}attempts": str(self.attempts),
            f"{HEADER_PREFIX}source-topic": self.source_topic,
            f"{HEADER_PREFIX}partition": str(self.partition),
            f"{HEADER_PREFIX}offset": str(self.offset),
            f"{HEADER_PREFIX}group": self.group_id,
            f"{HEADER_PREFIX}failed-at": datetime.now(UTC).isoformat(),
            f"{HEADER_PREFIX}original-headers": json.dumps(self.original_headers),
        }


async def publish_dead_letter(broker: KafkaBroker, letter: DeadLetter) -> None:
    """Write ``letter`` to its dead-letter topic with the original key and bytes."""
    await broker.publish(letter.value, topic=letter.topic, key=letter.key, headers=letter.headers())
