"""Snapshots of a model group's folded journal, so that a start reads one object plus the entries after it.

A snapshot is a derived copy, never the source of truth: ``registry/<pipeline>/snapshot/<sequence>.json``
holds the group folded from journal entries 1..sequence, written once with its SHA-256 like any
object. A start takes the newest snapshot that verifies and describes what its key says; any
other is ignored with a warning, and with none left the whole journal is folded.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Literal

from pydantic import Field

from services.registry.model_group import ModelGroup
from shared.events.envelope import Frozen
from shared.storage import ArtifactStore, IntegrityError, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

log = logging.getLogger("conveyor.registry.snapshots")

# Raise it whenever ModelGroup or ModelGroup.apply change what a fold yields: older snapshots are
# then ignored (they fail validation) and the journal is folded instead.
FORMAT: Final = 3
# The newest snapshot and the one before it, in case the newest cannot be read.
KEEP = 2


class SnapshotMismatchError(ValueError):
    """A snapshot that verifies but does not describe the group and entry its key names."""


class GroupSnapshot(Frozen):
    """A model group as folded from the first ``sequence`` entries of its journal."""

    format: Literal[3] = FORMAT
    sequence: int = Field(ge=1)
    group: ModelGroup


def encode(group: ModelGroup) -> bytes:
    """The snapshot of ``group`` as it is now."""
    return GroupSnapshot(sequence=group.entries, group=group).model_dump_json().encode()


def decode(body: bytes, *, pipeline: str, sequence: int) -> ModelGroup:
    """The group a snapshot holds, checked against the pipeline and sequence its key names."""
    snapshot = GroupSnapshot.model_validate_json(body)
    group = snapshot.group
    if (group.pipeline, group.entries, snapshot.sequence) != (pipeline, sequence, sequence):
        raise SnapshotMismatchError(
            f"it holds {group.pipeline} after {group.entries} entries (sequence {snapshot.sequence})"
        )
    return group


class Snapshots:
    """Reads the newest valid snapshot of a group; writes new ones off the caller's thread."""

    def __init__(self, store: ArtifactStore, *, bucket: str, prefix: str) -> None:
        self._store = store
        self._bucket = bucket
        self._prefix = prefix
        # One writer: snapshots go out in the order they were taken, and never hold up an append.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-snapshots")

    def latest(self, pipeline: str) -> ModelGroup | None:
        """The group as held by its newest snapshot that verifies (None when none does)."""
        keys = self._store.list_keys(bucket=self._bucket, prefix=self._folder(pipeline))
        for key in reversed(keys):
            try:
                body = self._store.get_verified(ObjectLocation(self._bucket, key))
                return decode(body, pipeline=pipeline, sequence=_sequence_of(key))
            except (ObjectNotFoundError, IntegrityError, ValueError) as error:  # ValueError: invalid body
                log.warning("ignoring the registry snapshot %s: %s", key, error)
        return None

    def write(self, group: ModelGroup) -> None:
        """Snapshot ``group`` now; the object is written, and older ones pruned, in the background."""
        body = encode(group)  # taken here: the group changes with its next entry
        self._writer.submit(self._write, group.pipeline, group.entries, body)

    def flush(self) -> None:
        """Wait until every snapshot taken so far is written (or has failed)."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        """Write what is pending, then stop the writer."""
        self._writer.shutdown(wait=True)

    def _write(self, pipeline: str, sequence: int, body: bytes) -> None:
        location = ObjectLocation(self._bucket, f"{self._folder(pipeline)}{sequence:010d}.json")
        try:
            self._store.put(location, body, content_type="application/json")
            older = self._store.list_keys(bucket=self._bucket, prefix=self._folder(pipeline))[:-KEEP]
            for key in older:
                self._store.remove(ObjectLocation(self._bucket, key))
        except Exception:  # a missing snapshot costs start time only: the journal holds every entry
            log.warning("could not write the registry snapshot %s", location.uri, exc_info=True)

    def _folder(self, pipeline: str) -> str:
        return f"{self._prefix}/{safe_segment(pipeline, what='pipeline')}/snapshot/"


def _sequence_of(key: str) -> int:
    return int(key.rsplit("/", 1)[-1].removesuffix(".json"))
