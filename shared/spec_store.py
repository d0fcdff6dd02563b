"""Pipeline specs stored versioned in MinIO: applying the same spec twice creates no new version."""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.pipeline_spec import PipelineSpec, SpecError
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

SPEC_PREFIX = "specs"


class UnknownPipelineError(LookupError):
    """No spec was ever applied for that pipeline (or that version)."""


@dataclass(frozen=True)
class AppliedSpec:
    """The outcome of applying a spec."""

    name: str
    version: str
    uri: str
    created: bool


class SpecStore:
    """Versioned pipeline specs: ``specs/<name>/<version>.yaml`` plus a pointer to the current one."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._bucket = bucket

    def apply(self, spec: PipelineSpec) -> AppliedSpec:
        """Store ``spec`` (once per content) and make it the pipeline's current spec."""
        location = self._version_location(spec.name, spec.version)
        created = not self._store.exists(location)
        ref = self._store.put(location, spec.to_yaml().encode(), content_type="application/yaml")
        pointer = json.dumps({"version": spec.version, "uri": ref.uri, "sha256": ref.sha256}).encode()
        self._store.replace(self._current_location(spec.name), pointer)
        return AppliedSpec(name=spec.name, version=spec.version, uri=ref.uri, created=created)

    def get(self, name: str, version: str) -> PipelineSpec:
        """A stored version of a pipeline's spec, verified against its recorded digest."""
        try:
            data = self._store.get_verified(self._version_location(name, version))
        except ObjectNotFoundError as error:
            raise UnknownPipelineError(f"pipeline {name!r} has no spec version {version!r}") from error
        return PipelineSpec.from_yaml(data.decode())

    def current(self, name: str) -> PipelineSpec:
        """The spec most recently applied for ``name``."""
        try:
            pointer = json.loads(self._store.get_verified(self._current_location(name)))
        except ObjectNotFoundError as error:
            raise UnknownPipelineError(
                f"no pipeline named {name!r}: apply its spec first (conveyor pipeline apply)"
            ) from error
        return self.get(name, pointer["version"])

    def names(self) -> list[str]:
        """Every pipeline that has a spec."""
        keys = self._store.list_keys(bucket=self._bucket, prefix=f"{SPEC_PREFIX}/")
        return sorted({key.split("/")[1] for key in keys if key.endswith("/current.json")})

    def versions(self, name: str) -> list[str]:
        """Every stored spec version of ``name``."""
        keys = self._store.list_keys(bucket=self._bucket, prefix=f"{SPEC_PREFIX}/{name}/")
        return sorted(key.rsplit("/", 1)[1].removesuffix(".yaml") for key in keys if key.endswith(".yaml"))

    def _version_location(self, name: str, version: str) -> ObjectLocation:
        name, version = safe_segment(name, what="pipeline"), safe_segment(version, what="spec version")
        return ObjectLocation(self._bucket, f"{SPEC_PREFIX}/{name}/{version}.yaml")

    def _current_location(self, name: str) -> ObjectLocation:
        name = safe_segment(name, what="pipeline")
        return ObjectLocation(self._bucket, f"{SPEC_PREFIX}/{name}/current.json")


__all__ = ["AppliedSpec", "SpecError", "SpecStore", "UnknownPipelineError"]
