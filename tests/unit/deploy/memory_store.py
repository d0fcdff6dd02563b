"""An in-memory stand-in for the artifact store port (only what the drift code uses)."""

from __future__ import annotations

from shared.events import ArtifactRef
from shared.storage import ObjectNotFoundError, sha256_hex
from shared.uris import ObjectLocation


class MemoryStore:
    """Objects in a dict, keyed by URI."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def replace(self, location: ObjectLocation, data: bytes, *, content_type: str = "") -> ArtifactRef:
        self.objects[location.uri] = data
        return ArtifactRef(uri=location.uri, sha256=sha256_hex(data), size_bytes=len(data))

    def get_verified(self, location: ObjectLocation, *, expected_sha256: str | None = None) -> bytes:
        if location.uri not in self.objects:
            raise ObjectNotFoundError(location.uri)
        return self.objects[location.uri]

    def put_content_addressed(
        self, data: bytes, *, bucket: str, prefix: str, suffix: str = "", content_type: str = ""
    ) -> ArtifactRef:
        return self.replace(ObjectLocation(bucket, f"{prefix}/{sha256_hex(data)}{suffix}"), data)
