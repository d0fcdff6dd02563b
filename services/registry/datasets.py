"""Governed dataset checkout: who took which stored dataset version, when and why.

Ingest owns the dataset versions (``services.ingest.datasets`` says where they are); the registry
lends them out because it already holds the tokens and is the place a model version's lineage is
read from. Every checkout is recorded before a byte is sent, as one immutable object of its own
(``audit/datasets/<pipeline>/<time>-<id>.json``): nothing is ever rewritten, so the audit is
append-only by construction and survives any restart. The bytes are streamed from MinIO and
hashed on the way; a version is the SHA-256 of its bytes, so the client checks the same digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

from pydantic import Field

from services.ingest.datasets import DatasetIndex, Outcome
from shared.events.envelope import Frozen, Name, PipelineName, Sha256, Text
from shared.storage import ArtifactStore, IntegrityError
from shared.uris import ObjectLocation, safe_segment

AUDIT_PREFIX = "audit/datasets"
CHUNK = 1024 * 1024


class DatasetVersion(Frozen):
    """One stored dataset version of a pipeline."""

    dataset_version: Sha256
    uri: str
    format: str
    accepted: bool = Field(description="Whether validation accepted it under any spec version.")
    latest: bool = Field(description="The last accepted version: what a checkout takes by default.")


class Checkout(Frozen):
    """One checkout in the audit: who took which version, when and why."""

    checkout_id: UUID
    pipeline: PipelineName
    dataset_version: Sha256
    uri: str
    user: Name
    role: Name
    reason: Text
    at: datetime


class DatasetCatalog:
    """Dataset versions to list and lend out, and the audit of every loan."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._bucket = bucket
        self._index = DatasetIndex(store, bucket=bucket)

    def versions(self, pipeline: str) -> list[DatasetVersion]:
        """Every stored version of ``pipeline`` (``LookupError`` when it has none)."""
        latest = self._index.latest_version(pipeline)
        found = [
            self._describe(pipeline, version, latest=latest) for version in self._index.versions(pipeline)
        ]
        if not found:
            raise LookupError(f"pipeline {pipeline!r} has no stored dataset version")
        return found

    def resolve(self, pipeline: str, dataset_version: str | None) -> DatasetVersion:
        """The version asked for, or the latest accepted one (``LookupError`` when there is none)."""
        versions = {v.dataset_version: v for v in self.versions(pipeline)}
        chosen = dataset_version or self._index.latest_version(pipeline)
        if chosen is None or chosen not in versions:
            raise LookupError(
                f"pipeline {pipeline!r} has no dataset version {chosen!r}"
                if chosen
                else f"pipeline {pipeline!r} has no accepted dataset version: name one"
            )
        return versions[chosen]

    def record(
        self, version: DatasetVersion, *, pipeline: str, user: str, role: str, reason: str
    ) -> Checkout:
        """Append a checkout to the audit (before any byte is sent)."""
        checkout = Checkout(
            checkout_id=uuid4(),
            pipeline=pipeline,
            dataset_version=version.dataset_version,
            uri=version.uri,
            user=user,
            role=role,
            reason=reason,
            at=datetime.now(UTC),
        )
        key = f"{self._audit_folder(pipeline)}{checkout.at:%Y%m%dT%H%M%S%fZ}-{checkout.checkout_id}.json"
        self._store.put(
            ObjectLocation(self._bucket, key),
            checkout.model_dump_json().encode(),
            content_type="application/json",
        )
        return checkout

    def audit(self, pipeline: str, *, dataset_version: str | None = None) -> list[Checkout]:
        """Every checkout of ``pipeline`` (of one version), oldest first; each entry digest-verified."""
        keys = self._store.list_keys(bucket=self._bucket, prefix=self._audit_folder(pipeline))
        entries = (
            Checkout.model_validate_json(self._store.get_verified(ObjectLocation(self._bucket, key)))
            for key in keys
        )
        return [entry for entry in entries if dataset_version in (None, entry.dataset_version)]

    def stream(self, version: DatasetVersion) -> Iterator[bytes]:
        """The version's bytes in chunks; a mismatch with its digest breaks the stream at the end."""
        reader = self._store.open(self._store.locate(version.uri))
        digest = hashlib.sha256()
        for chunk in reader.chunks(CHUNK):
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != version.dataset_version:
            raise IntegrityError(f"{version.uri} does not hash to its version {version.dataset_version}")

    def _describe(self, pipeline: str, version: str, *, latest: str | None) -> DatasetVersion:
        prefix = self._index.prefix(pipeline, version)
        raw = self._store.list_keys(bucket=self._bucket, prefix=f"{prefix}/raw/")
        outcomes = self._store.list_keys(bucket=self._bucket, prefix=f"{prefix}/outcomes/")
        accepted = any(
            Outcome.model_validate_json(self._store.get_verified(ObjectLocation(self._bucket, key))).accepted
            for key in outcomes
        )
        key = raw[0] if raw else f"{prefix}/raw/{version}"
        return DatasetVersion(
            dataset_version=version,
            uri=ObjectLocation(self._bucket, key).uri,
            format=key.rsplit(".", 1)[-1] if "." in key.rsplit("/", 1)[-1] else "",
            accepted=accepted,
            latest=version == latest,
        )

    def _audit_folder(self, pipeline: str) -> str:
        return f"{AUDIT_PREFIX}/{safe_segment(pipeline, what='pipeline')}/"
