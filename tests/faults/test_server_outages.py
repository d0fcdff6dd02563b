"""Kafka or MinIO stopped for 20 s mid-burst, then started again with its data: everything completes once."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from infra.kafka import start_kafka, stop_kafka
from infra.minio import start_minio, stop_minio
from shared.clients.events import EventWatcher
from shared.events import ALL_EVENTS, DatasetValidated
from shared.settings import Settings
from tests.e2e.conftest import Stack
from tests.faults.burst import (
    CHAIN,
    DECISIONS,
    assert_no_dead_letters,
    assert_one_artifact_per_run,
    assert_processed_once_in_effect,
    assert_registered_versions,
    publish_burst,
    reached,
    wait_until_decided,
    wait_until_reached,
)

pytestmark = pytest.mark.infra

OUTAGE_S = 20.0
# What the safe consumer logs when it retries a handler or a publication (shared/messaging/consumer.py).
RETRIED = re.compile(r"handler \S+ attempt \d+ failed|publishing failed")
SERVERS: dict[str, tuple[Callable[[Settings], object], Callable[[Settings], object]]] = {
    "kafka": (stop_kafka, start_kafka),
    "minio": (stop_minio, start_minio),
}


@pytest.mark.parametrize("server", sorted(SERVERS))
async def test_server_stopped_mid_burst_then_everything_completes_once(
    settings: Settings,
    stack: Stack,
    dead_letters: EventWatcher,
    pipeline_name: str,
    server: str,
    figures: Callable[[str, object], None],
) -> None:
    stop, start = SERVERS[server]
    burst = await publish_burst(stack, pipeline_name)
    await wait_until_reached(stack.watcher, burst, DatasetValidated, count=3, timeout=120)

    steps = (*CHAIN, *DECISIONS)
    before = sum(reached(stack.watcher, burst, step) for step in steps)
    log_offsets = {name: p.log.stat().st_size for name, p in stack.processes.items()}
    await asyncio.to_thread(stop, settings)  # the session's servers, with their data
    await asyncio.sleep(OUTAGE_S)  # the deliberate outage
    during = sum(reached(stack.watcher, burst, step) for step in steps) - before
    await asyncio.to_thread(start, settings)
    back = time.monotonic()

    while sum(reached(stack.watcher, burst, step) for step in steps) - before <= during:
        assert time.monotonic() - back < 120, f"no progress within 120s of {server} coming back"
        await asyncio.sleep(0.2)
    first_progress = time.monotonic() - back
    await wait_until_decided(stack, burst, timeout=300)
    all_done = time.monotonic() - back

    exited = {
        name: p.process.returncode for name, p in stack.processes.items() if p.process.poll() is not None
    }
    assert not exited, f"services exited during the {server} outage: {exited}"
    retries = {
        name: len(RETRIED.findall(p.log_text(log_offsets[name]))) for name, p in stack.processes.items()
    }
    delivery = assert_processed_once_in_effect(stack.watcher, burst)
    await assert_registered_versions(stack, burst)
    assert_one_artifact_per_run(stack, burst)
    assert_no_dead_letters(dead_letters, burst, [event.topic for event in ALL_EVENTS])
    figures(
        f"{server} down {OUTAGE_S:.0f}s",
        f"{during} chain steps completed during the outage; first progress {first_progress:.1f}s after "
        f"it came back; all {len(burst.arrivals)} decided {all_done:.1f}s after; "
        f"{delivery.repeats} repeated records (same event id) of {delivery.records}; "
        f"handler and publication retries {retries}",
    )
