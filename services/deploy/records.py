"""What the deploy service must remember across restarts, one small record per pipeline in MinIO.

The record says which approved versions the service knows (with everything needed to serve
them again), which one is active, the endpoint's port, and which approval events it handled.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal, Self
from uuid import UUID

from pydantic import Field

from services.deploy.serving.predict import ModelCard
from shared.environments import DEFAULT_ENVIRONMENT
from shared.events import ArtifactRef, ServableVersion
from shared.events.envelope import Frozen
from shared.events.releases import ReleaseStrategy, ReleaseWindow
from shared.release import ReleaseSpec
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

PREFIX = "deploy/deployments"
_HANDLED_KEPT = 200


class ApprovedVersion(Frozen):
    """One approved model version, as the deploy service needs it to serve it (again)."""

    version: int = Field(ge=1)
    model: ArtifactRef
    card: ModelCard
    lineage_uri: str
    spec_version: str
    realtime: bool = True
    correlation_id: UUID
    approval_event_id: UUID
    approved_at: datetime

    @classmethod
    def of(cls, event: ServableVersion, card: ModelCard) -> Self:
        """The version an approval names, with the card read from its artifact and lineage."""
        return cls(
            version=event.version,
            model=event.model,
            card=card,
            lineage_uri=event.lineage.lineage_uri,
            spec_version=event.lineage.spec_version,
            realtime=event.deployment.realtime,
            correlation_id=event.correlation_id,
            approval_event_id=event.event_id,
            approved_at=event.occurred_at,
        )


class ReleaseState(Frozen):
    """A release in progress: the candidate beside the active version, and how far it has come."""

    version: int = Field(ge=1)
    baseline: int = Field(ge=1)
    strategy: ReleaseStrategy
    spec: ReleaseSpec
    step: int = Field(default=1, ge=1, description="The window being judged, from 1.")
    status: Literal["running", "paused", "awaiting_promotion"] = "running"
    approval_event_id: UUID
    windows: list[ReleaseWindow] = Field(default_factory=list, description="The windows judged so far.")

    @property
    def share(self) -> float:
        """The candidate's share in the current window (the last one's while awaiting promotion)."""
        shares = self.spec.shares()
        return shares[min(self.step, len(shares)) - 1]


class DeploymentRecord(Frozen):
    """A pipeline's deployment state."""

    pipeline: str
    port: int
    active: int | None = None
    versions: dict[int, ApprovedVersion] = Field(default_factory=dict)
    order: list[int] = Field(default_factory=list, description="Versions in the order they were approved.")
    handled: list[UUID] = Field(default_factory=list, description="Approval events already acted on.")
    release: ReleaseState | None = Field(default=None, description="A candidate judged on live traffic.")
    shared: bool = Field(default=False, description="Served from the shared workers (port: theirs).")

    def current(self) -> ApprovedVersion | None:
        """The active version."""
        return self.versions.get(self.active) if self.active is not None else None

    def superseded(self, event: ServableVersion) -> bool:
        """Whether an approval was already handled, or is older than the active version's."""
        active = self.current()
        return event.event_id in self.handled or (
            active is not None and event.occurred_at < active.approved_at
        )

    def knowing(self, version: ApprovedVersion) -> DeploymentRecord:
        """This record knowing ``version`` (so its captures are recognised) before it serves."""
        return self.model_copy(update={"versions": {**self.versions, version.version: version}})

    def approved(self, version: ApprovedVersion, *, activate: bool) -> DeploymentRecord:
        """This record once ``version`` is approved (and, for real-time, serving)."""
        order = [v for v in self.order if v != version.version] + [version.version]
        return self.model_copy(
            update={
                "versions": {**self.versions, version.version: version},
                "order": order,
                "active": version.version if activate else self.active,
                "handled": [*self.handled, version.approval_event_id][-_HANDLED_KEPT:],
            }
        )

    def releasing(self, release: ReleaseState | None) -> DeploymentRecord:
        """This record with ``release`` in progress (None: no release)."""
        return self.model_copy(update={"release": release})

    def released_back(self) -> DeploymentRecord:
        """This record once its release's candidate was taken out: never served, never redeployed."""
        if self.release is None:
            return self
        handled = [*self.handled, self.release.approval_event_id][-_HANDLED_KEPT:]
        return self.model_copy(update={"release": None, "handled": handled})

    def previous(self) -> ApprovedVersion | None:
        """The version approved before the active one: what a rollback returns to."""
        if self.active is None or self.active not in self.order:
            return None
        index = self.order.index(self.active)
        return self.versions[self.order[index - 1]] if index > 0 else None

    def rolled_back(self) -> DeploymentRecord:
        """This record once the previous version is active again."""
        previous = self.previous()
        if previous is None:
            raise LookupError(f"{self.pipeline} has no version before {self.active} to roll back to")
        return self.model_copy(update={"active": previous.version})

    def batch_version(self, version: int | None) -> ApprovedVersion | None:
        """The version a batch job uses: the one asked for, else the active one, else the latest."""
        if version is not None:
            return self.versions.get(version)
        if self.active is not None:
            return self.versions[self.active]
        return self.versions[self.order[-1]] if self.order else None


class DeploymentRecords:
    """Deployment records in the artifacts bucket, one JSON object per pipeline."""

    def __init__(self, store: ArtifactStore, *, bucket: str, environment: str = DEFAULT_ENVIRONMENT) -> None:
        self._store = store
        self._bucket = bucket
        # Production keeps the prefix it always had; another environment's records sit apart.
        self._prefix = PREFIX if environment == DEFAULT_ENVIRONMENT else f"{PREFIX}-{environment}"

    def load_all(self) -> dict[str, DeploymentRecord]:
        """Every pipeline's record."""
        keys = self._store.list_keys(bucket=self._bucket, prefix=f"{self._prefix}/")
        records = (self._read(ObjectLocation(self._bucket, key)) for key in keys if key.endswith(".json"))
        return {record.pipeline: record for record in records if record is not None}

    def save(self, record: DeploymentRecord) -> None:
        """Write a pipeline's record (it replaces the previous one)."""
        data = json.dumps(record.model_dump(mode="json"), indent=2).encode()
        self._store.replace(self._location(record.pipeline), data)

    def _read(self, location: ObjectLocation) -> DeploymentRecord | None:
        try:
            return DeploymentRecord.model_validate_json(self._store.get_verified(location))
        except ObjectNotFoundError:
            return None

    def _location(self, pipeline: str) -> ObjectLocation:
        return ObjectLocation(self._bucket, f"{self._prefix}/{safe_segment(pipeline, what='pipeline')}.json")
