"""The journal kept in MinIO: ``registry/<pipeline>/journal/<sequence>.json``, one immutable object each.

Every ``SNAPSHOT_EVERY`` entries of a group its folded state is also written as a snapshot
(``snapshot.py``), so a start reads one snapshot per group and the few entries after it, not the
whole history; a group without a valid snapshot is folded from its whole journal, as before.

Entry ``n`` is created only if no object holds that key yet (``ArtifactStore.create``, a
conditional PUT): two registry replicas, or a replica and a zombie of itself, can never both
write entry ``n``. The loser gets ``ObjectExistsError``, folds in what the winner wrote
(``catch_up``) and decides again on the newer state; see ``Registry``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pydantic import TypeAdapter

from services.registry.journal import JournalEntry
from services.registry.model_group import ModelGroup
from services.registry.snapshot import Snapshots
from shared.storage import ArtifactStore
from shared.uris import ObjectLocation, safe_segment

log = logging.getLogger("conveyor.registry.journal")

PREFIX = "registry"
# A snapshot costs a write of the whole group (0.15 MB for 100 versions), off the request path; a
# start reads fewer entries than this per group after it: for 100 groups at most 3,100 GETs,
# about 2 s of MinIO reads here.
SNAPSHOT_EVERY = 32
_ENTRY = TypeAdapter(JournalEntry)
# MinIO answers many small reads at once far faster than one after another.
_READERS = 16


@dataclass
class _Start:
    """Where a group's fold starts: a snapshot's state (or nothing) and the journal keys after it."""

    group: ModelGroup
    tail: list[str]


class JournalStore:
    """Appends journal entries, snapshots each group every so often, and rebuilds every group."""

    def __init__(self, store: ArtifactStore, *, bucket: str, snapshot_every: int = SNAPSHOT_EVERY) -> None:
        self._store = store
        self._bucket = bucket
        self._snapshot_every = snapshot_every
        self._snapshots = Snapshots(store, bucket=bucket, prefix=PREFIX)
        self._snapshotted: dict[str, int] = {}  # the sequence of each group's newest snapshot

    def append(self, group: ModelGroup, entry: JournalEntry) -> None:
        """Write ``entry`` as the group's next journal object, then fold it in.

        Raises ``ObjectExistsError`` (and leaves ``group`` as it was) when another writer has
        already written that entry: ``group`` is behind the journal.
        """
        sequence = group.entries + 1
        self._store.create(self._location(group.pipeline, sequence), _ENTRY.dump_json(entry))
        group.apply(entry)
        self._snapshot_if_due(group)

    def catch_up(self, group: ModelGroup) -> int:
        """Fold in the entries other writers appended after ``group``'s last one; return how many."""
        journal = f"{PREFIX}/{safe_segment(group.pipeline, what='pipeline')}/journal/"
        after = self._location(group.pipeline, group.entries).key if group.entries else None
        keys = _entries(self._store.list_keys(bucket=self._bucket, prefix=journal, start_after=after))
        for key in keys:
            if _sequence(key) != group.entries + 1:  # never fold across a hole: the order is the state
                raise RuntimeError(f"the journal of {group.pipeline} lacks entry {group.entries + 1}")
            group.apply(_ENTRY.validate_json(self._read(key)))
        if keys:
            self._snapshot_if_due(group)
        return len(keys)

    def pipelines(self) -> list[str]:
        """The pipelines that have a folder in the journal, sorted."""
        folders = self._store.list_prefixes(bucket=self._bucket, prefix=f"{PREFIX}/")
        return [folder.split("/")[1] for folder in folders]

    def load(self) -> dict[str, ModelGroup]:
        """Every model group: its newest valid snapshot, then the journal entries after it, in order."""
        pipelines = self.pipelines()
        groups: dict[str, ModelGroup] = {}
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            starts = list(pool.map(self._start, pipelines))
            bodies = pool.map(self._read, [key for start in starts for key in start.tail])  # in order
            for start in starts:
                group = start.group
                self._snapshotted[group.pipeline] = group.entries  # the snapshot's sequence, 0 for none
                for _ in start.tail:
                    group.apply(_ENTRY.validate_json(next(bodies)))
                if group.entries:
                    groups[group.pipeline] = group
                    self._snapshot_if_due(group)  # folded from a long tail: snapshotted now
        return groups

    def flush(self) -> None:
        """Wait until the snapshots taken so far are written."""
        self._snapshots.flush()

    def close(self) -> None:
        """Write the pending snapshots and stop writing more."""
        self._snapshots.close()

    def _start(self, pipeline: str) -> _Start:
        journal = f"{PREFIX}/{pipeline}/journal/"
        group = self._snapshots.latest(pipeline)
        if group is not None:
            # Listed from the entry before the snapshot's last one, the journal shows that it holds it.
            after = self._location(pipeline, group.entries - 1).key
            keys = self._store.list_keys(bucket=self._bucket, prefix=journal, start_after=after)
            if keys[:1] == [self._location(pipeline, group.entries).key]:
                return _Start(group, _entries(keys[1:]))
            log.warning(
                "ignoring the registry snapshot of %s: its journal lacks entry %d", pipeline, group.entries
            )
        keys = self._store.list_keys(bucket=self._bucket, prefix=journal)
        return _Start(ModelGroup(pipeline), _entries(keys))

    def _read(self, key: str) -> bytes:
        return self._store.get_verified(ObjectLocation(self._bucket, key))

    def _snapshot_if_due(self, group: ModelGroup) -> None:
        if group.entries - self._snapshotted.get(group.pipeline, 0) >= self._snapshot_every:
            self._snapshotted[group.pipeline] = group.entries
            self._snapshots.write(group)

    def _location(self, pipeline: str, sequence: int) -> ObjectLocation:
        pipeline = safe_segment(pipeline, what="pipeline")
        return ObjectLocation(self._bucket, f"{PREFIX}/{pipeline}/journal/{sequence:010d}.json")


def _sequence(key: str) -> int:
    return int(key.rsplit("/", 1)[-1].removesuffix(".json"))


def _entries(keys: list[str]) -> list[str]:
    return [key for key in keys if key.endswith(".json")]  # keys sort by sequence
