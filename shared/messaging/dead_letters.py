"""Dead-lettered messages: read them with their reasons, and send them back to their source topic.

A dead-letter topic (``<topic>.dlq``) holds the original bytes, key and headers of every message
a service gave up on, with the reason in ``conveyor-dlq-*`` headers. ``replay`` re-publishes the
originals to their source topic and records what it replayed as committed offsets of one consumer
group per reason (``<prefix>-dlq-replay-<reason>``): a second replay does not publish the same
letters again, and letters passed over by a reason or a limit stay replayable. The CLI
(``conveyor dlq``) and the console both work through this module.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.messaging.dead_letter import HEADER_PREFIX, Reason
from shared.messaging.security import client_options
from shared.messaging.stopping import stop_consumer
from shared.settings import Settings
from shared.topics import DEAD_LETTER_SUFFIX, dead_letter_topic

REASONS: tuple[str, ...] = get_args(Reason)
UNKNOWN_REASON = "unknown"
REPLAYED_FROM_HEADER = f"{HEADER_PREFIX}replayed-from"
_TIMEOUT_MS = 15_000


class DeadLetterError(Exception):
    """A dead-letter topic that does not exist, or that Kafka did not deliver in time."""


async def dead_letter_topics(settings: Settings) -> list[str]:
    """Every dead-letter topic that exists now, by name."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=_TIMEOUT_MS,
        **client_options(settings),
    )
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.endswith(DEAD_LETTER_SUFFIX))
    finally:
        await admin.close()


@dataclass(frozen=True)
class Letter:
    """One dead-lettered message: where it sits in the dead-letter topic, why, and the original."""

    partition: int
    offset: int
    timestamp_ms: int
    reason: str
    error_type: str
    error: str
    attempts: int
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    failed_at: str
    key: bytes | None = field(repr=False)
    value: bytes = field(repr=False)
    original_headers: dict[str, str] = field(repr=False)

    @classmethod
    def from_record(cls, record: ConsumerRecord[bytes, bytes], *, source_topic: str) -> Letter:
        """Read the failure headers of one dead-letter record (missing ones stay blank)."""
        headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}

        def header(name: str) -> str:
            return headers.get(f"{HEADER_PREFIX}{name}", "")

        try:
            original = json.loads(header("original-headers") or "{}")
        except ValueError:
            original = {}
        reason = header("reason")
        return cls(
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            reason=reason if reason in REASONS else UNKNOWN_REASON,
            error_type=header("error-type"),
            error=header("error"),
            attempts=_int(header("attempts")) or 0,
            source_topic=header("source-topic") or source_topic,
            source_partition=_int(header("partition")),
            source_offset=_int(header("offset")),
            failed_at=header("failed-at"),
            key=record.key,
            value=record.value or b"",
            original_headers=_text_mapping(original),
        )

    def summary(self, *, replayed: bool) -> dict[str, Any]:
        """What ``list`` shows of the letter (not its bytes)."""
        shown = {k: v for k, v in asdict(self).items() if k not in ("key", "value", "original_headers")}
        return {**shown, "key": self.key.decode(errors="replace") if self.key else None, "replayed": replayed}


@dataclass(frozen=True)
class DeadLetters:
    """The letters of one dead-letter topic, and how far each reason has been replayed."""

    topic: str
    letters: list[Letter]
    ends: dict[int, int]
    replayed_to: dict[str, dict[int, int]]

    def replayed(self, letter: Letter) -> bool:
        """Whether ``letter`` was already sent back to its source topic."""
        return letter.offset < self.replayed_to[letter.reason].get(letter.partition, 0)

    def pending(self, reasons: Iterable[str]) -> list[Letter]:
        """Letters of ``reasons`` not replayed yet: offset order in a partition, oldest first across them."""
        wanted = set(reasons)
        by_partition = [
            [
                x
                for x in self.letters
                if x.partition == partition and x.reason in wanted and not self.replayed(x)
            ]
            for partition in sorted(self.ends)
        ]
        return list(heapq.merge(*by_partition, key=lambda x: x.timestamp_ms))


def replay_group(prefix: str, reason: str) -> str:
    """The consumer group whose committed offsets record how far ``reason``'s letters were replayed."""
    return f"{prefix}-dlq-replay-{reason}"


def dead_letter_name(topic: str) -> str:
    """The dead-letter topic of ``topic`` (given as the source topic or as the dead-letter topic itself)."""
    return topic if topic.endswith(DEAD_LETTER_SUFFIX) else dead_letter_topic(topic)


async def read_dead_letters(settings: Settings, topic: str) -> DeadLetters:
    """Every letter of ``topic``'s dead-letter topic up to its current end, and the replay marks."""
    name = dead_letter_name(topic)
    source = name.removesuffix(DEAD_LETTER_SUFFIX)
    partitions = await _partitions(settings, name)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=_TIMEOUT_MS,
        fetch_max_bytes=settings.kafka_max_message_bytes * 2,
        max_partition_fetch_bytes=settings.kafka_max_message_bytes,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
        # An explicit seek: seek_to_beginning can lose a race with the reset that assign() starts.
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + _TIMEOUT_MS / 1000
        while any([await consumer.position(tp) < ends[tp.partition] for tp in partitions]):
            batches = (await consumer.getmany(timeout_ms=500)).values()
            if batches:
                deadline = time.monotonic() + _TIMEOUT_MS / 1000
            elif time.monotonic() > deadline:
                raise DeadLetterError(f"timed out reading {name} from Kafka at {settings.bootstrap_servers}")
            for batch in batches:
                records.extend(r for r in batch if r.offset < ends[r.partition])
    finally:
        await stop_consumer(consumer)
    letters = sorted(
        (Letter.from_record(r, source_topic=source) for r in records), key=lambda x: (x.partition, x.offset)
    )
    marks = await _replay_marks(settings, name, partitions)
    return DeadLetters(topic=name, letters=letters, ends=ends, replayed_to=marks)


async def replay(
    settings: Settings, topic: str, *, reasons: Sequence[str], limit: int | None = None
) -> list[Letter]:
    """Re-publish pending letters of ``reasons`` to their source topics; return those replayed.

    A letter is marked replayed only after the broker acknowledged its re-publication, so an
    interrupted replay may send one letter twice but never forgets one (consumers are idempotent).
    """
    found = await read_dead_letters(settings, topic)
    chosen = found.pending(reasons)[:limit]
    if not chosen:
        return []
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=_TIMEOUT_MS,
        max_request_size=settings.kafka_max_message_bytes,
    )
    await producer.start()
    try:
        for letter in chosen:
            headers = [(name, value.encode()) for name, value in letter.original_headers.items()]
            headers.append(
                (REPLAYED_FROM_HEADER, f"{found.topic}/{letter.partition}/{letter.offset}".encode())
            )
            await producer.send_and_wait(letter.source_topic, letter.value, key=letter.key, headers=headers)
    finally:
        await producer.stop()
    await _mark_replayed(settings, found, reasons=reasons, chosen=chosen)
    return chosen


async def _mark_replayed(
    settings: Settings, found: DeadLetters, *, reasons: Sequence[str], chosen: list[Letter]
) -> None:
    # Per reason and partition: up to the first pending letter left out (by --limit), else the end.
    sent = {(x.partition, x.offset) for x in chosen}
    for reason in reasons:
        left = [x for x in found.pending([reason]) if (x.partition, x.offset) not in sent]
        marks = {
            TopicPartition(found.topic, partition): min(
                (x.offset for x in left if x.partition == partition), default=end
            )
            for partition, end in found.ends.items()
        }
        await _commit(settings, replay_group(settings.consumer_group_prefix, reason), marks)


async def _commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=_TIMEOUT_MS,
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await stop_consumer(consumer)


async def _replay_marks(
    settings: Settings, topic: str, partitions: list[TopicPartition]
) -> dict[str, dict[int, int]]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=_TIMEOUT_MS,
        **client_options(settings),
    )
    await admin.start()
    try:
        marks: dict[str, dict[int, int]] = {}
        for reason in (*REASONS, UNKNOWN_REASON):
            group = replay_group(settings.consumer_group_prefix, reason)
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            marks[reason] = {tp.partition: max(meta.offset, 0) for tp, meta in committed.items()}
        return marks
    finally:
        await admin.close()


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=_TIMEOUT_MS,
        **client_options(settings),
    )
    await admin.start()
    try:
        existing = await admin.list_topics()
        if topic not in existing:
            known = sorted(
                t.removesuffix(DEAD_LETTER_SUFFIX) for t in existing if t.endswith(DEAD_LETTER_SUFFIX)
            )
            raise DeadLetterError(
                f"no dead-letter topic {topic!r}; topics with one: {', '.join(known) or 'none'}"
            )
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        (TopicPartition(topic, p["partition"]) for t in described for p in t["partitions"]),
        key=lambda tp: tp.partition,
    )


def _text_mapping(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
