"""Registry snapshots against a real MinIO: a start from them folds exactly what the whole journal folds."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from minio import Minio
from minio.helpers import DictType

from services.registry.journal import JournalEntry
from services.registry.journal_store import JournalStore
from services.registry.model_group import ModelGroup
from services.registry.registry import Registry
from services.registry.snapshot import encode
from shared.events import ArtifactRef, ModelDeployed
from shared.spec_store import SpecStore
from shared.storage import DIGEST_METADATA, ArtifactStore, sha256_hex
from shared.uris import ObjectLocation
from tests.integration.registry.test_registry import apply_spec, candidate, new_pipeline
from tests.unit.registry.entries import history, registered

pytestmark = pytest.mark.infra

EVERY = 5
LONG = history(9)  # 21 entries: snapshots at 5, 10, 15 and 20, of which 15 and 20 are kept
SHORT = history(1)  # 2 entries: no snapshot


class RecordingStore(ArtifactStore):
    """The real store, remembering which objects were read, to see what a start reads."""

    def __init__(self, client: Minio, *, buckets: tuple[str, ...]) -> None:
        super().__init__(client, buckets=buckets)
        self.reads: list[str] = []

    def get_verified(self, location: ObjectLocation, *, expected_sha256: str | None = None) -> bytes:
        self.reads.append(location.key)
        return super().get_verified(location, expected_sha256=expected_sha256)


class GatedStore(ArtifactStore):
    """The real store, holding every snapshot write until the test opens the gate."""

    def __init__(self, client: Minio, *, buckets: tuple[str, ...]) -> None:
        super().__init__(client, buckets=buckets)
        self.gate = threading.Event()

    def put(
        self, location: ObjectLocation, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> ArtifactRef:
        if "/snapshot/" in location.key:
            assert self.gate.wait(timeout=30), "the test never opened the gate"
        return super().put(location, data, content_type=content_type)


class HeldJournal(JournalStore):
    """A journal whose load waits until the test lets it go, as a long one would take its time."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        super().__init__(store, bucket=bucket)
        self.release = threading.Event()

    def load(self) -> dict[str, ModelGroup]:
        assert self.release.wait(timeout=30), "the test never let the load go"
        return super().load()


def write(journal: JournalStore, pipeline: str, entries: list[JournalEntry]) -> ModelGroup:
    """Append ``entries`` as the registry would, and wait for the snapshots they caused."""
    group = ModelGroup(pipeline)
    for entry in entries:
        journal.append(group, entry)
    journal.flush()
    return group


def journal_key(pipeline: str, sequence: int) -> str:
    return f"registry/{pipeline}/journal/{sequence:010d}.json"


def snapshot_key(pipeline: str, sequence: int) -> str:
    return f"registry/{pipeline}/snapshot/{sequence:010d}.json"


def snapshots(store: ArtifactStore, bucket: str, pipeline: str) -> list[int]:
    keys = store.list_keys(bucket=bucket, prefix=f"registry/{pipeline}/snapshot/")
    return [int(key.rsplit("/", 1)[1].removesuffix(".json")) for key in keys]


def load(minio: Minio, bucket: str, *, snapshot_every: int = 1000) -> tuple[dict[str, ModelGroup], list[str]]:
    """The groups a fresh start rebuilds, and the objects it read (by default it snapshots nothing itself)."""
    store = RecordingStore(minio, buckets=(bucket,))
    journal = JournalStore(store, bucket=bucket, snapshot_every=snapshot_every)
    groups = journal.load()
    journal.close()
    return groups, store.reads


def rewrite(minio: Minio, bucket: str, key: str, body: bytes, *, sha256: str | None) -> None:
    """Replace an object behind the store's back, with the digest metadata given (or none)."""
    metadata: DictType | None = {DIGEST_METADATA: sha256} if sha256 is not None else None
    minio.put_object(bucket, key, io.BytesIO(body), len(body), metadata=metadata)


def test_a_start_from_snapshots_and_their_tail_folds_what_the_whole_journal_folds(
    minio: Minio, store: ArtifactStore, bucket: str
) -> None:
    journal = JournalStore(store, bucket=bucket, snapshot_every=EVERY)
    written = {"long": write(journal, "long", LONG), "short": write(journal, "short", SHORT)}
    assert written["long"].entries == 21
    assert snapshots(store, bucket, "long") == [15, 20]  # older ones pruned
    assert snapshots(store, bucket, "short") == []

    from_snapshots, reads = load(minio, bucket)

    assert from_snapshots == written
    # The newest snapshot and only the entry after it; the short group from its journal.
    assert sorted(reads) == sorted(
        [snapshot_key("long", 20), journal_key("long", 21), journal_key("short", 1), journal_key("short", 2)]
    )

    for sequence in (15, 20):
        minio.remove_object(bucket, snapshot_key("long", sequence))
    from_journal, reads = load(minio, bucket)

    assert from_journal == from_snapshots
    assert len(reads) == 21 + 2  # every entry, and nothing else


# Ways a stored snapshot can go bad, each turning (body, its sha256) into what is found instead.
CORRUPTIONS: dict[str, Callable[[bytes, str], tuple[bytes, str | None]]] = {
    "bytes changed after writing": lambda body, digest: (body.replace(b'"alice"', b'"mallory"'), digest),
    "no recorded digest": lambda body, _: (body, None),
    "truncated, with a matching digest": lambda body, _: (body[:100], sha256_hex(body[:100])),
    "an unknown format": lambda body, _: _signed(json.dumps({**json.loads(body), "format": 99}).encode()),
    "the state of another entry": lambda *_: _signed(encode(folded("long", LONG[:10]))),
}


def _signed(body: bytes) -> tuple[bytes, str]:
    return body, sha256_hex(body)


def folded(pipeline: str, entries: list[JournalEntry]) -> ModelGroup:
    group = ModelGroup(pipeline)
    for entry in entries:
        group.apply(entry)
    return group


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_bad_snapshot_is_ignored_with_a_warning_and_the_journal_folded_instead(
    minio: Minio, store: ArtifactStore, bucket: str, caplog: pytest.LogCaptureFixture, corruption: str
) -> None:
    written = write(JournalStore(store, bucket=bucket, snapshot_every=EVERY), "long", LONG)
    for sequence in (20, 15):
        key = snapshot_key("long", sequence)
        body = store.get_verified(ObjectLocation(bucket, key))
        bad, digest = CORRUPTIONS[corruption](body, sha256_hex(body))
        rewrite(minio, bucket, key, bad, sha256=digest)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
            groups, reads = load(minio, bucket)

        assert groups == {"long": written}
        assert any(key in record.getMessage() for record in caplog.records)
        if sequence == 20:  # the snapshot before it is used, with a longer tail
            assert snapshot_key("long", 15) in reads
            assert [r for r in reads if "/journal/" in r] == [journal_key("long", n) for n in range(16, 22)]
        else:  # no valid snapshot is left: the whole journal
            assert [r for r in reads if "/journal/" in r] == [journal_key("long", n) for n in range(1, 22)]


def test_a_snapshot_ahead_of_its_journal_is_ignored(
    minio: Minio, store: ArtifactStore, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    written = write(JournalStore(store, bucket=bucket, snapshot_every=100), "long", LONG[:19])
    ahead = folded("long", LONG)  # two entries more than the journal holds
    store.put(ObjectLocation(bucket, snapshot_key("long", 21)), encode(ahead))

    with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
        groups, reads = load(minio, bucket)

    assert groups == {"long": written}
    assert groups["long"].entries == 19
    assert "its journal lacks entry 21" in caplog.text
    assert len([r for r in reads if "/journal/" in r]) == 19


def test_a_journal_that_ran_past_its_snapshots_is_snapshotted_at_the_next_start(
    minio: Minio, store: ArtifactStore, bucket: str
) -> None:
    # Written by a registry that never snapshotted: one from before snapshots, or killed each time.
    written = write(JournalStore(store, bucket=bucket, snapshot_every=1000), "long", LONG)
    assert snapshots(store, bucket, "long") == []

    first, reads = load(minio, bucket, snapshot_every=EVERY)  # and load() waits for its snapshots
    assert first == {"long": written} and len(reads) == 21
    assert snapshots(store, bucket, "long") == [21]

    second, reads = load(minio, bucket, snapshot_every=EVERY)
    assert second == first
    assert reads == [snapshot_key("long", 21)]


def test_appending_does_not_wait_for_the_snapshot_to_be_written(minio: Minio, bucket: str) -> None:
    gated = GatedStore(minio, buckets=(bucket,))
    journal = JournalStore(gated, bucket=bucket, snapshot_every=2)
    group = ModelGroup("churn")
    for version in (1, 2, 3):
        journal.append(group, registered(version))  # the snapshot of entry 2 is held at the gate

    assert gated.list_keys(bucket=bucket, prefix="registry/churn/journal/") == [
        journal_key("churn", n) for n in (1, 2, 3)
    ]
    assert snapshots(gated, bucket, "churn") == []
    gated.gate.set()
    journal.flush()
    assert snapshots(gated, bucket, "churn") == [2]
    groups, _ = load(minio, bucket)
    assert groups == {"churn": group}


async def test_versions_stay_in_sequence_across_restarts_from_a_snapshot_taken_midway(
    minio: Minio, store: ArtifactStore, bucket: str
) -> None:
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")

    def start() -> tuple[Registry, JournalStore]:
        journal = JournalStore(store, bucket=bucket, snapshot_every=3)
        return Registry(journal=journal, store=store, spec_of=SpecStore(store, bucket=bucket).get), journal

    registry, journal = start()
    await registry.load()
    first = candidate(store, bucket, spec)
    await registry.register(first)
    await registry.register(candidate(store, bucket, spec))  # entries 1-4: registered and approved twice
    journal.flush()
    assert snapshots(store, bucket, spec.name) == [3]  # taken midway, between a version and its approval

    restarted, journal = start()
    await restarted.load()
    assert restarted.groups == registry.groups
    assert restarted.group(spec.name).entries == 4
    again = await restarted.register(first)  # a redelivery of a version the snapshot holds
    assert [e.version for e in again] == [1, 1]  # type: ignore[attr-defined]
    third = await restarted.register(candidate(store, bucket, spec))
    assert [e.version for e in third] == [3, 3]  # type: ignore[attr-defined]
    deployed = ModelDeployed.caused_by(
        first, producer="deploy", version=3, endpoint_url="http://127.0.0.1:3000", environment="local"
    ).model_copy(update={"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC)})
    await restarted.record_deployment(deployed)
    journal.flush()
    assert snapshots(store, bucket, spec.name) == [3, 6]

    after, _ = start()
    await after.load()
    group = after.group(spec.name)
    assert after.groups == restarted.groups
    assert (group.entries, sorted(group.versions), group.next_version) == (7, [1, 2, 3], 4)
    assert [v.status for v in group.versions.values()] == ["Approved"] * 3
    live = group.live("local")
    assert live is not None and live.version == 3

    for sequence in snapshots(store, bucket, spec.name):
        minio.remove_object(bucket, snapshot_key(spec.name, sequence))
    from_journal, _ = load(minio, bucket)
    assert from_journal == after.groups


async def test_a_change_asked_for_while_the_journal_loads_waits_for_the_load(
    store: ArtifactStore, bucket: str
) -> None:
    # The registry process loads its journal while Kafka assigns its consumers, which may then deliver.
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")
    specs = SpecStore(store, bucket=bucket)
    before = Registry(journal=JournalStore(store, bucket=bucket), store=store, spec_of=specs.get)
    await before.load()
    for _ in range(2):
        await before.register(candidate(store, bucket, spec))
    journal = HeldJournal(store, bucket=bucket)
    restarted = Registry(journal=journal, store=store, spec_of=specs.get)
    third = candidate(store, bucket, spec)

    loading = asyncio.create_task(restarted.load())
    registering = asyncio.create_task(restarted.register(third))
    done, _ = await asyncio.wait({registering}, timeout=1.0)  # ample for a registration not waiting
    assert not done, "registered from an empty state before the journal was loaded"
    journal.release.set()
    await loading
    events = await registering

    assert [e.version for e in events] == [3, 3]  # type: ignore[attr-defined]
    assert sorted(restarted.group(spec.name).versions) == [1, 2, 3]
