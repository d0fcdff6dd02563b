"""Where ingest keeps dataset versions in MinIO, and what it already decided about each.

``datasets/<pipeline>/<dataset version>/`` holds the raw bytes, the splits, the profile and the
report; ``outcomes/<spec version>.json`` is written last and makes a redelivered arrival a
lookup instead of a second validation. ``latest.json`` points at the last accepted version,
the baseline that the next version's schema and drift are compared against.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.events import ArtifactRef
from shared.events.envelope import Frozen
from shared.profile import DataProfile
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

PREFIX = "datasets"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Outcome(Frozen):
    """What validating one dataset version under one spec version produced."""

    accepted: bool
    fields: dict[str, Any]


class DatasetIndex:
    """Dataset versions of every pipeline, and the outcome of validating each."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self.bucket = bucket

    def prefix(self, pipeline: str, dataset_version: str) -> str:
        """The key prefix of one dataset version."""
        pipeline = safe_segment(pipeline, what="pipeline")
        return f"{PREFIX}/{pipeline}/{safe_segment(dataset_version, what='dataset version')}"

    def outcome(self, pipeline: str, dataset_version: str, spec_version: str) -> Outcome | None:
        """The recorded outcome, if this version was already validated under this spec."""
        try:
            data = self._store.get_verified(self._outcome_location(pipeline, dataset_version, spec_version))
        except ObjectNotFoundError:
            return None
        return Outcome.model_validate_json(data)

    def record(self, pipeline: str, dataset_version: str, spec_version: str, outcome: Outcome) -> None:
        """Write the outcome (last, after every artifact it names)."""
        location = self._outcome_location(pipeline, dataset_version, spec_version)
        self._store.put(location, outcome.model_dump_json().encode(), content_type="application/json")

    def latest_profile(self, pipeline: str) -> DataProfile | None:
        """The profile of the last accepted version, if any."""
        try:
            pointer = json.loads(self._store.get_verified(self._latest_location(pipeline)))
        except ObjectNotFoundError:
            return None
        profile = ArtifactRef.model_validate(pointer["profile"])
        return DataProfile.model_validate_json(self._store.get(profile))

    def latest_source(self, pipeline: str) -> str | None:
        """The landing URI of the last accepted version, if any."""
        try:
            pointer = json.loads(self._store.get_verified(self._latest_location(pipeline)))
        except ObjectNotFoundError:
            return None
        return str(pointer["source_uri"])

    def versions(self, pipeline: str) -> list[str]:
        """Every stored dataset version of ``pipeline`` (accepted or not), sorted."""
        folder = f"{PREFIX}/{safe_segment(pipeline, what='pipeline')}/"
        names = (
            key.removeprefix(folder).rstrip("/")
            for key in self._store.list_prefixes(bucket=self.bucket, prefix=folder)
        )
        return [name for name in names if _SHA256.fullmatch(name)]

    def latest_version(self, pipeline: str) -> str | None:
        """The last accepted version, if any."""
        try:
            pointer = json.loads(self._store.get_verified(self._latest_location(pipeline)))
        except ObjectNotFoundError:
            return None
        return str(pointer["dataset_version"])

    def set_latest(
        self, pipeline: str, *, dataset_version: str, profile: ArtifactRef, source_uri: str
    ) -> None:
        """Make ``dataset_version`` the baseline for the next one."""
        pointer = {
            "dataset_version": dataset_version,
            "profile": profile.model_dump(),
            "source_uri": source_uri,
        }
        self._store.replace(self._latest_location(pipeline), json.dumps(pointer).encode())

    def _outcome_location(self, pipeline: str, dataset_version: str, spec_version: str) -> ObjectLocation:
        spec_version = safe_segment(spec_version, what="spec version")
        return ObjectLocation(
            self.bucket, f"{self.prefix(pipeline, dataset_version)}/outcomes/{spec_version}.json"
        )

    def _latest_location(self, pipeline: str) -> ObjectLocation:
        return ObjectLocation(self.bucket, f"{PREFIX}/{safe_segment(pipeline, what='pipeline')}/latest.json")
