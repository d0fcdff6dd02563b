"""Past its retry budget an event is dead-lettered (retry_exhausted); `conveyor dlq replay` sends it back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from infra.minio import start_minio, stop_minio
from shared.clients.events import EventWatcher, upload_to_landing
from shared.events import DataArrived, DatasetValidated, ModelRegistered
from shared.messaging import KafkaEventPublisher, create_broker
from shared.settings import Settings
from shared.topics import DATA_ARRIVED
from tests.e2e.conftest import Stack
from tests.faults.burst import cheap_spec, dataset_csv
from tests.faults.dlq_tools import conveyor, letter_headers, letters_for
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.infra

SHORT_BUDGET = {
    "CONVEYOR_RETRY_ATTEMPTS": "2",
    "CONVEYOR_RETRY_INITIAL_BACKOFF_S": "0.2",
    "CONVEYOR_RETRY_MAX_BACKOFF_S": "0.5",
}


@pytest.fixture
async def impatient_ingest(stack: Stack) -> AsyncIterator[ServiceProcess]:
    """The stack's ingest replaced, in its consumer group, by one whose retry budget is about a second."""
    ingest = stack.processes["ingest"]
    await asyncio.to_thread(ingest.stop)
    impatient = ServiceProcess("ingest", env={**ingest.env, **SHORT_BUDGET}, log_dir=ingest.log.parent)
    try:
        await asyncio.to_thread(impatient.start, timeout=120)
        yield impatient
    finally:
        await asyncio.to_thread(impatient.stop)
        await asyncio.to_thread(ingest.start, timeout=120)


async def test_exhausted_retries_are_dead_lettered_and_replayed_once(
    settings: Settings,
    stack: Stack,
    dead_letters: EventWatcher,
    impatient_ingest: ServiceProcess,
    pipeline_name: str,
    tmp_path: Path,
    figures: Callable[[str, object], None],
) -> None:
    await asyncio.to_thread(stack.specs.apply, cheap_spec(pipeline_name))
    csv = tmp_path / "arrival.csv"
    csv.write_bytes(dataset_csv(100))
    uri = await asyncio.to_thread(upload_to_landing, stack.settings, pipeline_name, csv)
    arrival = DataArrived.first(producer="faults", pipeline=pipeline_name, uri=uri, format="csv")

    await asyncio.to_thread(stop_minio, settings)
    try:
        await publish(stack.settings, arrival)
        published = time.monotonic()
        letter = await wait_for_letter(dead_letters, pipeline_name, timeout=60)
        dead_lettered_in = time.monotonic() - published
    finally:
        await asyncio.to_thread(start_minio, settings)

    headers = letter_headers(letter)
    assert headers["reason"] == "retry_exhausted", headers
    assert headers["attempts"] == "2" and headers["source-topic"] == DATA_ARRIVED, headers
    assert DataArrived.model_validate_json(letter.value) == arrival, "the letter must keep the original bytes"
    assert stack.watcher.events(DatasetValidated, correlation_id=arrival.correlation_id) == []

    listed = conveyor(
        "--json", "dlq", "list", DATA_ARRIVED, "--reason", "retry_exhausted", settings=stack.settings
    )
    assert listed.returncode == 0, listed.stderr
    ours = [
        x
        for x in json.loads(listed.stdout)
        if x["offset"] == letter.offset and x["partition"] == letter.partition
    ]
    assert ours and ours[0]["replayed"] is False and ours[0]["attempts"] == 2, listed.stdout

    replayed = conveyor(
        "--json", "dlq", "replay", DATA_ARRIVED, "--reason", "retry_exhausted", settings=stack.settings
    )
    assert replayed.returncode == 0, replayed.stderr
    sent = [(x["partition"], x["offset"]) for x in json.loads(replayed.stdout)]
    assert (letter.partition, letter.offset) in sent, replayed.stdout
    started = time.monotonic()
    await stack.watcher.wait_for(ModelRegistered, correlation_id=arrival.correlation_id, timeout=180)
    registered_in = time.monotonic() - started

    again = conveyor("--json", "dlq", "replay", DATA_ARRIVED, settings=stack.settings)
    assert again.returncode == 0, again.stderr
    assert (letter.partition, letter.offset) not in [
        (x["partition"], x["offset"]) for x in json.loads(again.stdout)
    ]
    relisted = conveyor("--json", "dlq", "list", DATA_ARRIVED, settings=stack.settings)
    mine = [
        x
        for x in json.loads(relisted.stdout)
        if x["offset"] == letter.offset and x["partition"] == letter.partition
    ]
    assert mine[0]["replayed"] is True, relisted.stdout
    validated = stack.watcher.events(DatasetValidated, correlation_id=arrival.correlation_id)
    assert len({e.event_id for e in validated}) == 1, validated
    figures(
        "retry budget of 2",
        f"dead-lettered {dead_lettered_in:.1f}s after publication; "
        f"registered {registered_in:.1f}s after the replay",
    )


async def publish(settings: Settings, event: DataArrived) -> None:
    broker = create_broker(settings)
    await broker.connect()
    try:
        await KafkaEventPublisher(broker).publish(event)
    finally:
        await broker.stop()


async def wait_for_letter(
    watcher: EventWatcher, pipeline: str, *, timeout: float
) -> ConsumerRecord[bytes, bytes]:
    deadline = time.monotonic() + timeout
    while not (found := letters_for(watcher, DATA_ARRIVED, key=pipeline.encode())):
        assert time.monotonic() < deadline, f"no dead letter for {pipeline} within {timeout}s"
        await asyncio.sleep(0.2)
    return found[0]
