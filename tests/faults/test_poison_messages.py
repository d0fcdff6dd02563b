"""Poison on every consumed topic: each dead-lettered with its reason; the next valid event is processed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.approvals import ApprovalSigner
from shared.clients.events import EventWatcher
from shared.events import Event
from shared.messaging.publisher import encode
from shared.topics import dead_letter_topic
from tests.e2e.conftest import Stack
from tests.faults.conftest import Served
from tests.faults.dlq_tools import letter_headers
from tests.faults.poison import FollowUp, Poison, consumed_by_service, follow_up, poisons

pytestmark = pytest.mark.infra

CONSUMED = consumed_by_service()


def test_every_service_consumes_something() -> None:
    assert all(CONSUMED.values()), CONSUMED
    # Ten lifecycle events, and the six steps of a release that the registry journals.
    assert len({t for types in CONSUMED.values() for t in types}) == 16, CONSUMED


async def test_poison_is_dead_lettered_and_the_next_valid_event_is_processed(
    stack: Stack,
    served: Served,
    dead_letters: EventWatcher,
    producer: AIOKafkaProducer,
    figures: Callable[[str, object], None],
) -> None:
    environment = f"poison-{uuid.uuid4().hex[:6]}"
    # The suite holds the registry's key (its store is MinIO's admin): a promotion it sends is one the
    # registry signed, so that deploy refusing it would not look like poison being mishandled.
    signer = ApprovalSigner(stack.store, bucket=stack.settings.artifacts_bucket)
    sent: dict[type[Event], tuple[list[Poison], FollowUp]] = {}
    started = time.monotonic()
    for event_type in sorted({t for types in CONSUMED.values() for t in types}, key=lambda t: t.__name__):
        valid = follow_up(event_type, served.chain, environment=environment, signer=signer)
        bad = poisons(valid.event)
        for poison in bad:  # in the valid event's partition (but the wrong key's), ahead of it
            await producer.send_and_wait(event_type.topic, poison.value, key=poison.key)
        await producer.send_and_wait(event_type.topic, encode(valid.event), key=valid.event.key)
        sent[event_type] = (bad, valid)

    for event_type, (bad, _) in sent.items():
        await wait_for_letters(dead_letters, event_type, bad, timeout=120)
    dead_lettered_in = time.monotonic() - started
    for _, valid in sent.values():
        if valid.output is None:
            route, transition = valid.recorded, valid.transition
            await wait_for_history(
                stack, served.pipeline, environment, route=route, transition=transition, timeout=120
            )
        else:
            await stack.watcher.wait_for(valid.output, correlation_id=valid.event.correlation_id, timeout=180)
    processed_in = time.monotonic() - started

    # A valid event under the wrong key is refused, not processed: nothing follows from it.
    refused = {
        json.loads(p.value)["event_id"] for bad, _ in sent.values() for p in bad if p.reason == "wrong_key"
    }
    followed = [r.topic for r in stack.watcher.records if _cause_of(r.value) in refused]
    assert not followed, f"events caused by wrongly keyed messages: {followed}"
    exited = {n: p.process.returncode for n, p in stack.processes.items() if p.process.poll() is not None}
    assert not exited, f"services exited on poison: {exited}"
    figures(
        "poison",
        f"{sum(len(b) for b, _ in sent.values())} poison messages on {len(sent)} topics sent and "
        f"dead-lettered within {dead_lettered_in:.1f}s; every follow-up processed within {processed_in:.1f}s",
    )


async def wait_for_letters(
    watcher: EventWatcher, event_type: type[Event], bad: list[Poison], *, timeout: float
) -> None:
    """Each poison sent to ``event_type``'s topic is dead-lettered once, with its reason."""
    deadline = time.monotonic() + timeout
    topic = dead_letter_topic(event_type.topic)
    while True:
        found = {
            poison.kind: [r for r in watcher.records if r.topic == topic and r.value == poison.value]
            for poison in bad
        }
        if all(found.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    missing = [kind for kind, records in found.items() if not records]
    assert not missing, f"{event_type.topic}: not dead-lettered within {timeout}s: {missing}"
    for poison in bad:
        records = found[poison.kind]
        assert len(records) == 1, f"{event_type.topic}: {poison.kind} dead-lettered {len(records)} times"
        headers = letter_headers(records[0])
        assert headers["reason"] == poison.reason, f"{event_type.topic}: {poison.kind}: {headers}"
        assert headers["source-topic"] == event_type.topic and records[0].key == poison.key, headers


async def wait_for_history(
    stack: Stack, pipeline: str, environment: str, *, route: str, transition: str | None, timeout: float
) -> None:
    """The registry recorded the follow-up: its ``history`` or ``releases`` shows the new environment
    (and, for a release step, that step)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=stack.settings.registry_base_url, timeout=10) as client:
        while True:
            response = await client.get(f"/v1/groups/{pipeline}/{route}", params={"environment": environment})
            found = response.json() if response.status_code == 200 else []
            if found and (transition is None or any(r["transition"] == transition for r in found)):
                return
            assert time.monotonic() < deadline, f"no {route} of {pipeline} in {environment} recorded"
            await asyncio.sleep(0.2)


def _cause_of(value: bytes) -> str | None:
    try:
        return str(json.loads(value).get("causation_id"))
    except (ValueError, AttributeError):
        return None
