"""Two registries over one journal in a real MinIO: the conditional write fences every entry."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.registry.__main__ import listeners
from services.registry.journal import VersionDeployed
from services.registry.journal_store import JournalStore
from services.registry.model_group import ModelGroup, TransitionError
from services.registry.registry import Registry
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, ObjectExistsError
from tests.integration.processes import free_port
from tests.integration.registry.test_registry import apply_spec, candidate, new_pipeline

pytestmark = pytest.mark.infra


def replica(store: ArtifactStore, bucket: str) -> Registry:
    spec_of = SpecStore(store, bucket=bucket).get
    return Registry(
        journal=JournalStore(store, bucket=bucket), store=store, spec_of=spec_of, shared_journal=True
    )


async def test_two_replicas_number_versions_once_and_contiguously(store: ArtifactStore, bucket: str) -> None:
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")
    first, second = replica(store, bucket), replica(store, bucket)
    await asyncio.gather(first.load(), second.load())  # both start from the same, empty journal
    evaluated = [candidate(store, bucket, spec) for _ in range(8)]

    # Each candidate goes to both at once (a rebalance, a zombie): every race on an entry is lost by one.
    outcomes = await asyncio.gather(*(r.register(e) for e in evaluated for r in (first, second)))
    numbers = {events[0].run_id: events[0].version for events in outcomes}  # type: ignore[attr-defined]
    assert sorted(numbers.values()) == list(range(1, 9))
    for events in outcomes:
        assert numbers[events[0].run_id] == events[0].version  # type: ignore[attr-defined]

    reloaded = replica(store, bucket)
    await reloaded.load()
    group = reloaded.group(spec.name)
    assert sorted(group.versions) == list(range(1, 9))
    assert {v.status for v in group.versions.values()} == {"Approved"}
    assert all(len(v.audit) == 1 for v in group.versions.values()), "a version was approved twice"


async def test_a_decision_at_the_other_replica_is_kept_and_read_by_both(
    store: ArtifactStore, bucket: str
) -> None:
    spec = apply_spec(store, bucket, new_pipeline(), approval="manual")
    owner, other = replica(store, bucket), replica(store, bucket)
    await asyncio.gather(owner.load(), other.load())
    await owner.register(candidate(store, bucket, spec))

    await other.decide(spec.name, 1, approve=True, by="alice", comment="at the other replica")
    with pytest.raises(TransitionError):
        await owner.decide(spec.name, 1, approve=False, by="bob", comment="too late")
    assert (await owner.current(spec.name)).versions[1].status == "Approved"
    assert [g.pipeline for g in (await other.current_groups()).values()] == [spec.name]


def test_a_stale_writer_cannot_overwrite_an_entry(store: ArtifactStore, bucket: str) -> None:
    pipeline = new_pipeline()
    journal = JournalStore(store, bucket=bucket)
    stale = ModelGroup(pipeline)
    entry = VersionDeployed(
        at=datetime.now(UTC),
        version=1,
        environment="local",
        endpoint_url="http://a:1",
        deployed_event_id=uuid4(),
    )
    journal.append(ModelGroup(pipeline), entry)
    with pytest.raises(ObjectExistsError):
        journal.append(stale, entry.model_copy(update={"endpoint_url": "http://zombie:1"}))
    assert stale.entries == 0  # the loser's state is unchanged until it catches up
    assert journal.catch_up(stale) == 1 and stale.entries == 1


def test_the_registry_address_is_served_while_any_replica_lives(settings: Settings) -> None:
    """Both replicas listen on the address the other services call; the first gone, the second answers."""
    shared = settings.model_copy(update={"registry_port": free_port(), "registry_replicas": 2})
    first = listeners(shared)
    own = free_port()
    second = listeners(
        shared.model_copy(update={"registry_port": own, "registry_url": shared.registry_base_url})
    )
    try:
        assert [s.getsockname()[1] for s in first] == [shared.registry_port]
        assert [s.getsockname()[1] for s in second] == [own, shared.registry_port]
        for sock in (*first, *second):
            sock.listen()
        first[0].close()  # the first replica is killed
        with socket.create_connection((shared.registry_host, shared.registry_port), timeout=5):
            second[1].settimeout(5)
            accepted, _ = second[1].accept()
            accepted.close()
    finally:
        for sock in (*first, *second):
            sock.close()


def test_a_service_name_is_not_listened_on(settings: Settings) -> None:
    """Behind a Kubernetes Service or a compose name routing is the platform's: the replica's own socket."""
    replica = settings.model_copy(
        update={"registry_port": free_port(), "registry_replicas": 2, "registry_url": "http://registry:8000"}
    )
    sockets = listeners(replica)
    try:
        assert [s.getsockname()[1] for s in sockets] == [replica.registry_port]
    finally:
        for sock in sockets:
            sock.close()
