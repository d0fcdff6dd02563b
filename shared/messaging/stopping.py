"""Stopping an aiokafka consumer without the cancellation aiokafka can leak from its own tasks."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

log = logging.getLogger(__name__)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer``; raise a cancellation only when it is the caller's own.

    aiokafka 0.14's fetcher cancels, then awaits, a fetch that is sleeping in its retry back-off after a
    failed request (a request timeout on a busy broker), so ``stop()`` raises the CancelledError of a task
    it cancelled itself (aio-libs/aiokafka#974). The caller is not being cancelled: that error is not its
    own, and tearing down a watcher or a CLI read must not fail on it. (aiokafka's stop ends there, before
    it closes the client's connections; only private API could close them, and they go with the process.)
    ``tests/faults/test_consumer_stop.py`` shows the leak, and fails once an upgrade fixes it.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("aiokafka raised the cancellation of its own fetch while the consumer stopped; ignored")
