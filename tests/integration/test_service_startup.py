"""Work a service starts once it is up (warm workers, imports), on a real broker."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from faststream import FastStream

from shared.messaging import create_broker
from shared.service import after_startup_in_thread
from shared.settings import Settings

pytestmark = pytest.mark.infra


async def test_work_runs_in_a_thread_after_the_app_has_started(settings: Settings) -> None:
    done = threading.Event()
    threads: list[str] = []

    def work() -> None:
        threads.append(threading.current_thread().name)
        done.set()

    app = FastStream(create_broker(settings))
    after_startup_in_thread(app, work)
    assert not done.is_set()
    await app.start()
    try:
        assert await asyncio.to_thread(done.wait, 30)
        assert threads != [threading.current_thread().name]
    finally:
        await app.stop()


async def test_failing_work_is_logged_and_the_app_stays_up(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    def work() -> None:
        raise RuntimeError("no workers today")

    broker = create_broker(settings)
    app = FastStream(broker)
    after_startup_in_thread(app, work)
    with caplog.at_level(logging.WARNING, logger="conveyor.service"):
        await app.start()
        try:
            for _ in range(300):
                if "no workers today" in caplog.text:
                    break
                await asyncio.sleep(0.1)
            assert "work after startup failed" in caplog.text
            assert "no workers today" in caplog.text
            assert await broker.ping(timeout=10)  # the app is still up and connected
        finally:
            await app.stop()
