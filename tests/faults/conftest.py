"""One stack of all five services for the whole fault suite, put back together before every test.

Starting five services costs about 40 s on two cores, so the suite shares one stack (consumer
groups, ports and state of its own) instead of one per module. Tests kill services and stop
servers; the function-scoped ``stack`` fixture restarts whatever a previous test left down, so
one failure does not cascade into the next test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from infra.kafka import kafka_ready, start_kafka
from infra.minio import minio_ready, start_minio
from shared.clients.events import EventWatcher, publish_data_arrival
from shared.events import (
    ALL_EVENTS,
    DataArrived,
    DatasetValidated,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelTrained,
)
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.topics import dead_letter_topic
from tests.e2e.conftest import Stack, isolated_settings, running_stack, service_env
from tests.faults.burst import DRIFT_WINDOW, cheap_spec, dataset_csv
from tests.faults.dlq_tools import position_replay_groups

SERVED_CHAIN = (DataArrived, DatasetValidated, ModelTrained, ModelEvaluated, ModelApproved, ModelDeployed)
DEAD_LETTER_TOPICS = [dead_letter_topic(event.topic) for event in ALL_EVENTS]


@pytest.fixture(scope="package")
def fault_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Ports, consumer groups, buckets and a state directory of the fault suite's own."""
    return isolated_settings(settings, state_dir=tmp_path_factory.mktemp("faults-state"), prefix="faults")


@pytest.fixture(scope="package")
def fault_env(fault_settings: Settings) -> dict[str, str]:
    """The environment the suite's service processes run with."""
    return service_env(fault_settings)


@pytest.fixture(scope="package")
async def fault_stack(fault_settings: Settings, fault_env: dict[str, str]) -> AsyncIterator[Stack]:
    """All five services, for every test of the suite; stopped by pid at the end."""
    await ensure_topics(fault_settings, [event.topic for event in ALL_EVENTS])
    # Replays of earlier runs' dead letters are not this suite's business.
    await position_replay_groups(fault_settings, [event.topic for event in ALL_EVENTS])
    async with running_stack(fault_settings, fault_env) as stack:
        yield stack


@pytest.fixture(scope="package")
async def dead_letters(fault_stack: Stack) -> AsyncIterator[EventWatcher]:
    """Every record published on a dead-letter topic since the suite's stack started."""
    watcher = EventWatcher(fault_stack.settings, DEAD_LETTER_TOPICS)
    await watcher.start()
    yield watcher
    await watcher.stop()


async def restore(settings: Settings, stack: Stack) -> Stack:
    """Start whatever an earlier test left stopped: the session's servers (with their data), then services."""
    if not await asyncio.to_thread(kafka_ready, settings):
        await asyncio.to_thread(start_kafka, settings)
    if not await asyncio.to_thread(minio_ready, settings):
        await asyncio.to_thread(start_minio, settings)
    for process in stack.processes.values():
        if process.process is None or process.process.poll() is not None:
            await asyncio.to_thread(process.start, timeout=120)
    return stack


@pytest.fixture
async def stack(settings: Settings, fault_stack: Stack, dead_letters: EventWatcher) -> Stack:
    """The suite's stack with Kafka, MinIO and every service up."""
    return await restore(settings, fault_stack)


@dataclass(frozen=True)
class Served:
    """A pipeline whose one arrival went all the way to a served endpoint, with every event of its chain."""

    pipeline: str
    chain: dict[type[Event], Event]

    @property
    def deployed(self) -> ModelDeployed:
        """Where the version serves."""
        deployed = self.chain[ModelDeployed]
        assert isinstance(deployed, ModelDeployed)
        return deployed


@pytest.fixture(scope="package")
async def served(settings: Settings, fault_stack: Stack) -> Served:
    """One pipeline served in real time (and for batch), shared by the tests that need an endpoint."""
    stack = await restore(settings, fault_stack)
    pipeline = f"faults-served-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(stack.specs.apply, cheap_spec(pipeline, realtime=True, drift_window=DRIFT_WINDOW))
    arrival = await publish_data_arrival(
        stack.settings, pipeline=pipeline, data=dataset_csv(1000), filename="served.csv"
    )
    await stack.watcher.wait_for(ModelDeployed, correlation_id=arrival.correlation_id, timeout=300)
    chain = {
        event_type: stack.watcher.events(event_type, correlation_id=arrival.correlation_id)[0]
        for event_type in SERVED_CHAIN
    }
    return Served(pipeline=pipeline, chain=chain)


@pytest.fixture
def pipeline_name() -> str:
    """A pipeline no other test uses."""
    return f"faults-{uuid.uuid4().hex[:8]}"


FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """Record a measured figure; the suite prints them all at the end."""

    def record(name: str, value: object) -> None:
        FIGURES.append((f"{request.node.name}: {name}", str(value)))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the fault suite measured (recovery times, redeliveries) after the results."""
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
