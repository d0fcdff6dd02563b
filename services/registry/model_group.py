"""A model group's state, folded from its journal, and the status changes it allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.registry.journal import (
    JournalEntry,
    VersionApproved,
    VersionDeployed,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
    VersionReleased,
)
from shared.events import VersionStatus


class TransitionError(Exception):
    """A status change the registry does not allow (HTTP 409)."""


class UnknownEnvironmentError(LookupError):
    """The version's spec names no such environment (HTTP 404)."""


@dataclass
class AuditRecord:
    """Who changed a version's status, when and why."""

    action: str
    by: str
    at: datetime
    comment: str


@dataclass
class Deployment:
    """A version live in an environment from ``since`` until ``until`` (None: still live)."""

    environment: str
    version: int
    endpoint_url: str
    since: datetime
    until: datetime | None = None
    runtime: str | None = None  # sklearn or onnxruntime
    runtime_reason: str = ""


@dataclass
class Release:
    """One step of a version's gradual release in an environment."""

    environment: str
    version: int
    baseline_version: int
    strategy: str
    transition: str
    by: str
    at: datetime
    detail: str
    event_id: str


@dataclass
class ModelVersion:
    """One registered version and everything that happened to it."""

    registered: VersionRegistered
    status: VersionStatus
    audit: list[AuditRecord] = field(default_factory=list)
    # The environments the version may serve in, in the order it reached them, each with its entry.
    promotions: dict[str, VersionPromoted] = field(default_factory=dict)

    @property
    def eligible(self) -> list[str]:
        """Where the version may serve: its first environment once approved, then each promotion."""
        if self.status != "Approved":
            return []
        return [self.registered.environments[0].name, *self.promotions]

    @property
    def number(self) -> int:
        """The version number within its group."""
        return self.registered.version


@dataclass
class ModelGroup:
    """All versions of one pipeline's model."""

    pipeline: str
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    by_run_id: dict[str, int] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    entries: int = 0

    @property
    def next_version(self) -> int:
        """The number the next registered candidate gets."""
        return max(self.versions, default=0) + 1

    def champion(self) -> ModelVersion | None:
        """The most recent approved version."""
        approved = [v for v in self.versions.values() if v.status == "Approved"]
        return max(approved, key=lambda v: v.number, default=None)

    def live(self, environment: str, *, at: datetime | None = None) -> Deployment | None:
        """The deployment live in ``environment`` now (or at time ``at``)."""
        for deployment in reversed(self.deployments):
            if deployment.environment != environment:
                continue
            if at is None:
                return deployment if deployment.until is None else None
            if deployment.since <= at and (deployment.until is None or at < deployment.until):
                return deployment
        return None

    def check_decision(self, version: int, *, approve: bool) -> ModelVersion:
        """The version a person may approve or reject, or ``TransitionError`` saying why not."""
        found = self.versions.get(version)
        if found is None:
            raise LookupError(f"{self.pipeline} has no version {version}")
        if found.status != "PendingManualApproval":
            action = "approve" if approve else "reject"
            raise TransitionError(
                f"cannot {action} {self.pipeline} version {version}: it is {found.status}; "
                "only versions pending manual approval can be approved or rejected"
            )
        return found

    def check_promotion(self, version: int, *, to: str) -> tuple[ModelVersion, str]:
        """The version that may be promoted to ``to`` and the environment it leaves, or why not."""
        found = self.versions.get(version)
        if found is None:
            raise LookupError(f"{self.pipeline} has no version {version}")
        names = [environment.name for environment in found.registered.environments]
        if to not in names:
            raise UnknownEnvironmentError(f"the spec of {self.pipeline} version {version} names no {to!r}")
        index = names.index(to)
        if index == 0:
            raise TransitionError(f"{to} is the first environment: approval, not promotion, leads there")
        if to in found.eligible:
            raise TransitionError(f"{self.pipeline} version {version} was already promoted to {to}")
        before = names[index - 1]
        served = any(d.environment == before and d.version == version for d in self.deployments)
        batch_only = not found.registered.deployment.realtime and before in found.eligible
        if not (served or batch_only):
            raise TransitionError(
                f"{self.pipeline} version {version} never served in {before}: promote it there first"
            )
        return found, before

    def apply(self, entry: JournalEntry) -> None:
        """Fold one journal entry into the state."""
        # Snapshots hold what this yields: a change to it must raise snapshot.FORMAT.
        self.entries += 1
        if isinstance(entry, VersionRegistered):
            self.versions[entry.version] = ModelVersion(registered=entry, status="PendingManualApproval")
            self.by_run_id[entry.candidate.run_id] = entry.version
        elif isinstance(entry, VersionApproved):
            version = self.versions[entry.version]
            version.status = "Approved"
            version.audit.append(AuditRecord("approved", entry.by, entry.at, entry.comment))
        elif isinstance(entry, VersionRejected):
            version = self.versions[entry.version]
            version.status = "Rejected"
            version.audit.append(AuditRecord("rejected", entry.by, entry.at, entry.comment))
        elif isinstance(entry, VersionDeployed):
            self._record_deployment(entry)
        elif isinstance(entry, VersionPromoted):
            version = self.versions[entry.version]
            version.promotions[entry.environment] = entry
            action = f"promoted to {entry.environment}"
            version.audit.append(AuditRecord(action, entry.by, entry.at, entry.comment))
        elif isinstance(entry, VersionReleased):
            self._record_release(entry)

    def released(self, event_id: str) -> bool:
        """Whether the release event ``event_id`` is recorded already."""
        return any(release.event_id == event_id for release in self.releases)

    def _record_release(self, entry: VersionReleased) -> None:
        self.releases.append(
            Release(
                environment=entry.environment,
                version=entry.version,
                baseline_version=entry.baseline_version,
                strategy=entry.strategy,
                transition=entry.transition,
                by=entry.by,
                at=entry.at,
                detail=entry.detail,
                event_id=str(entry.event_id),
            )
        )
        version = self.versions.get(entry.version)
        if version is not None and entry.transition != "step_checked":  # windows: see the releases list
            action = f"release {entry.transition.replace('_', ' ')} in {entry.environment}"
            version.audit.append(AuditRecord(action, entry.by, entry.at, entry.detail))

    def _record_deployment(self, entry: VersionDeployed) -> None:
        current = self.live(entry.environment)
        if current is not None and current.version == entry.version:
            return  # the same version reported live again: nothing changed
        if current is not None:
            current.until = entry.at
        runtime = entry.runtime
        self.deployments.append(
            Deployment(
                entry.environment,
                entry.version,
                entry.endpoint_url,
                since=entry.at,
                runtime=runtime.name if runtime else None,
                runtime_reason=runtime.reason if runtime else "",
            )
        )
