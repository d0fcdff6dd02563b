"""The journal kept in MinIO: ``registry/<pipeline>/journal/<sequence>.json``, one immutable object each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pydantic import TypeAdapter

from services.registry.journal import JournalEntry
from services.registry.model_group import ModelGroup
from shared.storage import ArtifactStore
from shared.uris import ObjectLocation, safe_segment

PREFIX = "registry"
_ENTRY = TypeAdapter(JournalEntry)
# MinIO answers many small reads at once far faster than one after another.
_READERS = 16


class JournalStore:
    """Appends journal entries and rebuilds every model group from them."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._bucket = bucket

    def append(self, group: ModelGroup, entry: JournalEntry) -> None:
        """Write ``entry`` as the group's next journal object, then fold it in."""
        sequence = group.entries + 1
        self._store.put(self._location(group.pipeline, sequence), _ENTRY.dump_json(entry))
        group.apply(entry)

    def load(self) -> dict[str, ModelGroup]:
        """Every model group, folded from its journal in sequence order."""
        keys = self._store.list_keys(bucket=self._bucket, prefix=f"{PREFIX}/")
        keys = [key for key in keys if "/journal/" in key and key.endswith(".json")]
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            bodies = list(
                pool.map(lambda key: self._store.get_verified(ObjectLocation(self._bucket, key)), keys)
            )
        groups: dict[str, ModelGroup] = {}
        for key, body in zip(keys, bodies, strict=True):  # keys sort by pipeline, then sequence
            pipeline = key.split("/")[1]
            group = groups.setdefault(pipeline, ModelGroup(pipeline))
            group.apply(_ENTRY.validate_json(body))
        return groups

    def _location(self, pipeline: str, sequence: int) -> ObjectLocation:
        pipeline = safe_segment(pipeline, what="pipeline")
        return ObjectLocation(self._bucket, f"{PREFIX}/{pipeline}/journal/{sequence:010d}.json")
