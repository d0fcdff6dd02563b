"""Two registries over one journal in a real MinIO: the conditional write fences every entry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.registry.journal import VersionDeployed
from services.registry.journal_store import JournalStore
from services.registry.model_group import ModelGroup, TransitionError
from services.registry.registry import Registry
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, ObjectExistsError
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
