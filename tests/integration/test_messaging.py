"""Safe consumption against the real broker: typed events in, dead letters for what cannot be processed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from shared.events import DataArrived, DatasetRejected, Event, RuleResult
from shared.messaging import KafkaEventPublisher, TransientError, create_broker, subscribe
from shared.settings import Settings
from shared.topics import dead_letter_topic
from tests.integration.kafka_tools import headers_of, read_records, wait_for

pytestmark = pytest.mark.infra

GROUP = "test-consumer"


def arrival(name: str = "a.csv") -> DataArrived:
    return DataArrived.first(producer="test", pipeline="churn", uri=f"s3://conveyor-landing/churn/{name}")


@pytest.fixture
def fast_retry_settings(settings: Settings) -> Settings:
    """The session's settings with a short retry budget, so retry tests stay quick."""
    return settings.model_copy(
        update={"retry_attempts": 3, "retry_initial_backoff_s": 0.05, "retry_max_backoff_s": 0.2}
    )


Running = Callable[..., Awaitable[KafkaBroker]]


@pytest.fixture
async def consumer_of(fast_retry_settings: Settings, topic: str) -> AsyncIterator[Running]:
    """Starts a broker whose one subscriber runs the given handler on ``topic``."""
    brokers: list[KafkaBroker] = []

    async def start(
        handler: Callable[[Any], Awaitable[Any]], settings: Settings | None = None
    ) -> KafkaBroker:
        settings = settings or fast_retry_settings
        broker = create_broker(settings)
        subscribe(
            broker,
            event_type=DataArrived,
            handler=handler,
            group_id=GROUP,
            publisher=KafkaEventPublisher(broker),
            settings=settings,
            topic=topic,
        )
        await broker.start()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        await broker.stop()


async def publish(broker_settings: Settings, topic: str, event: Event) -> None:
    broker = create_broker(broker_settings)
    await broker.connect()
    try:
        await KafkaEventPublisher(broker).publish(event, topic=topic)
    finally:
        await broker.stop()


async def test_typed_event_is_published_consumed_and_its_output_published(
    settings: Settings, topic: str, consumer_of: Running
) -> None:
    seen: list[DataArrived] = []
    sent = arrival()

    async def on_data_arrived(event: DataArrived) -> DatasetRejected:
        seen.append(event)
        failure = RuleResult(rule="test_rule", passed=False, message="from the integration test")
        return DatasetRejected.caused_by(event, producer="test", source_uri=event.uri, failures=[failure])

    await consumer_of(on_data_arrived)
    await publish(settings, topic, sent)
    await wait_for(lambda: len(seen) == 1, what="the event to be handled")
    assert seen == [sent]
    assert isinstance(seen[0], DataArrived)

    # The returned event reached its own topic, keyed by pipeline and carrying the chain's ids.
    records = await read_records(settings, DatasetRejected.topic, count=1, timeout=30)
    outputs = [DatasetRejected.model_validate_json(r.value) for r in records]
    mine = [o for o in outputs if o.correlation_id == sent.correlation_id]
    if not mine:  # the shared topic holds other runs' events too: read on until ours shows
        records = await read_records(settings, DatasetRejected.topic, count=len(records) + 1, timeout=30)
        mine = [
            o
            for o in (DatasetRejected.model_validate_json(r.value) for r in records)
            if o.correlation_id == sent.correlation_id
        ]
    assert len(mine) == 1 and mine[0].causation_id == sent.event_id


async def test_malformed_messages_are_dead_lettered_and_the_next_one_is_processed(
    settings: Settings, topic: str, consumer_of: Running, producer: AIOKafkaProducer
) -> None:
    seen: list[DataArrived] = []

    async def on_data_arrived(event: DataArrived) -> None:
        seen.append(event)

    await consumer_of(on_data_arrived)
    valid = arrival("after-the-poison.csv")
    wrong_types = {**json.loads(valid.model_dump_json()), "uri": 42, "occurred_at": "yesterday"}
    huge = {**json.loads(valid.model_dump_json()), "uri": "s3://conveyor-landing/" + "x" * 5_000_000}
    poison = [
        b"{not json",
        json.dumps(wrong_types).encode(),
        json.dumps(huge).encode(),
    ]
    # Same key: one partition, so the valid message queues behind the poison.
    for body in poison:
        await producer.send_and_wait(topic, body, key=b"churn", headers=[("origin", b"test")])
    await producer.send_and_wait(topic, valid.model_dump_json().encode(), key=b"churn")

    await wait_for(lambda: len(seen) == 1, what="the valid message after the poison")
    assert seen == [valid]

    letters = await read_records(settings, dead_letter_topic(topic), count=3)
    reasons = [headers_of(r)["conveyor-dlq-reason"] for r in letters]
    assert reasons == ["invalid_payload", "invalid_payload", "too_large"]
    assert [r.value for r in letters] == poison  # the original bytes, untouched
    first = headers_of(letters[0])
    assert first["conveyor-dlq-error-type"] == "ValidationError"
    assert "Invalid JSON" in first["conveyor-dlq-error"]
    assert first["conveyor-dlq-source-topic"] == topic
    assert first["conveyor-dlq-attempts"] == "0"
    assert json.loads(first["conveyor-dlq-original-headers"]) == {"origin": "test"}
    assert "uri" in headers_of(letters[1])["conveyor-dlq-error"]
    assert "exceeds" in headers_of(letters[2])["conveyor-dlq-error"]
    assert all(r.key == b"churn" for r in letters)


async def test_message_with_a_key_other_than_its_pipeline_is_dead_lettered(
    settings: Settings, topic: str, consumer_of: Running, producer: AIOKafkaProducer
) -> None:
    seen: list[DataArrived] = []

    async def on_data_arrived(event: DataArrived) -> None:
        seen.append(event)

    await consumer_of(on_data_arrived)
    await producer.send_and_wait(topic, arrival().model_dump_json().encode(), key=b"another-pipeline")
    letters = await read_records(settings, dead_letter_topic(topic), count=1)
    assert headers_of(letters[0])["conveyor-dlq-reason"] == "wrong_key"
    assert seen == []


async def test_transient_failure_is_retried_and_processed_once(
    settings: Settings, topic: str, consumer_of: Running
) -> None:
    calls: list[DataArrived] = []
    done: list[DataArrived] = []

    async def on_data_arrived(event: DataArrived) -> None:
        calls.append(event)
        if len(calls) < 3:
            raise TransientError("MinIO briefly away")
        done.append(event)

    await consumer_of(on_data_arrived)
    sent = arrival()
    await publish(settings, topic, sent)
    await wait_for(lambda: len(done) == 1, what="the third attempt to succeed")
    follower = arrival("next.csv")
    await publish(settings, topic, follower)
    await wait_for(lambda: len(done) == 2, what="the next message")
    assert done == [sent, follower]
    assert len(calls) == 4  # three attempts for the first message, one for the next


async def test_exhausted_retries_and_permanent_errors_go_to_the_dead_letter_topic(
    settings: Settings, topic: str, consumer_of: Running
) -> None:
    calls: dict[str, int] = {}

    async def on_data_arrived(event: DataArrived) -> None:
        calls[event.uri] = calls.get(event.uri, 0) + 1
        if event.uri.endswith("flaky.csv"):
            raise TransientError("still away")
        raise KeyError("a bug, not worth retrying")

    await consumer_of(on_data_arrived)
    await publish(settings, topic, arrival("flaky.csv"))
    await publish(settings, topic, arrival("buggy.csv"))
    letters = await read_records(settings, dead_letter_topic(topic), count=2)
    by_reason = {headers_of(r)["conveyor-dlq-reason"]: headers_of(r) for r in letters}
    assert by_reason["retry_exhausted"]["conveyor-dlq-attempts"] == "3"
    assert by_reason["retry_exhausted"]["conveyor-dlq-error-type"] == "TransientError"
    assert by_reason["processing_error"]["conveyor-dlq-attempts"] == "1"
    assert by_reason["processing_error"]["conveyor-dlq-error-type"] == "KeyError"
    assert calls == {"s3://conveyor-landing/churn/flaky.csv": 3, "s3://conveyor-landing/churn/buggy.csv": 1}


async def test_a_message_is_redelivered_when_its_consumer_stops_before_finishing(
    settings: Settings, topic: str, consumer_of: Running
) -> None:
    started: list[DataArrived] = []

    async def never_finishes(event: DataArrived) -> None:
        started.append(event)
        raise TransientError("keeps failing until the consumer is stopped")

    slow_settings = settings.model_copy(update={"retry_attempts": 1000, "retry_initial_backoff_s": 0.2})
    first = await consumer_of(never_finishes, slow_settings)
    sent = arrival()
    await publish(settings, topic, sent)
    await wait_for(lambda: len(started) >= 1, what="the first consumer to start the work")
    await first.stop()  # as if the process died mid-work: nothing was acknowledged

    finished: list[DataArrived] = []

    async def on_data_arrived(event: DataArrived) -> None:
        finished.append(event)

    await consumer_of(on_data_arrived)  # same group id
    await wait_for(lambda: len(finished) == 1, timeout=60, what="the redelivery")
    assert finished == [sent]
