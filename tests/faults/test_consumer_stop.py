"""A consumer stopped while its fetches fail (the broker paused) stops without a stray cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka import kafka_server
from infra.process import running_pid
from shared.messaging import client_options, stop_consumer
from shared.settings import Settings
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.infra

FETCH_FAILED = "Failed fetch messages"


async def _reading(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A consumer at the end of ``topic`` whose failed fetch waits 30 s before it is tried again."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=2_000,
        retry_backoff_ms=30_000,
        fetch_max_wait_ms=100,
        enable_auto_commit=False,
        **client_options(settings),
    )
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    await consumer.seek_to_end(partition)
    await consumer.position(partition)
    return consumer


async def test_a_consumer_stopped_in_its_fetch_back_off_stops_without_raising(
    settings: Settings, stack: Stack, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    ours, bare = await _reading(settings, topic), await _reading(settings, topic)
    broker = running_pid(kafka_server(settings))
    assert broker is not None, "the session's broker is not running"
    os.kill(broker, signal.SIGSTOP)  # its fetches now time out, and each consumer backs off for 30 s
    try:
        deadline = time.monotonic() + 30
        while caplog.text.count(FETCH_FAILED) < 2:
            assert time.monotonic() < deadline, f"no two '{FETCH_FAILED}' within 30 s: {caplog.text}"
            await asyncio.sleep(0.1)
    finally:
        os.kill(broker, signal.SIGCONT)

    # aiokafka's own stop raises the cancellation of the fetch it cancelled (aio-libs/aiokafka#974). If
    # this fails, an upgrade fixed it, and shared/messaging/stopping.py can go.
    with pytest.raises(asyncio.CancelledError):
        await bare.stop()
    await stop_consumer(ours)
    assert "raised the cancellation of its own fetch" in caplog.text
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # nothing is left to cancel this test
