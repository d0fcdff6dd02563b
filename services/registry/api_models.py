"""What the registry's HTTP API returns (these shape its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.registry.model_group import Deployment, ModelGroup, ModelVersion, Release
from shared.events import ArtifactRef, DeploymentTarget, GateResult, LineageSummary, VersionStatus


class DecisionRequest(BaseModel):
    """An approval or rejection, with the reason for the audit trail."""

    comment: str = Field(default="", max_length=4000)


class PromotionRequest(BaseModel):
    """A promotion to the next environment, with the reason for the audit trail."""

    to: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="The environment the version goes to.")
    comment: str = Field(default="", max_length=4000)


class AuditEntry(BaseModel):
    """Who changed a version's status, when and why."""

    action: str
    by: str
    at: datetime
    comment: str


class DeploymentRecord(BaseModel):
    """A version live in an environment over a span of time."""

    environment: str
    version: int
    endpoint_url: str
    since: datetime
    until: datetime | None
    runtime: str | None = None
    runtime_reason: str = ""

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentRecord:
        """The record of one deployment."""
        return cls(
            environment=deployment.environment,
            version=deployment.version,
            endpoint_url=deployment.endpoint_url,
            since=deployment.since,
            until=deployment.until,
            runtime=deployment.runtime,
            runtime_reason=deployment.runtime_reason,
        )


class ReleaseRecord(BaseModel):
    """One step of a version's gradual release in an environment."""

    environment: str
    version: int
    baseline_version: int
    strategy: str
    transition: str
    by: str
    at: datetime
    detail: str

    @classmethod
    def of(cls, release: Release) -> ReleaseRecord:
        """The record of one release step."""
        return cls(
            environment=release.environment,
            version=release.version,
            baseline_version=release.baseline_version,
            strategy=release.strategy,
            transition=release.transition,
            by=release.by,
            at=release.at,
            detail=release.detail,
        )


class VersionSummary(BaseModel):
    """One line of a version list."""

    pipeline: str
    version: int
    status: VersionStatus
    run_id: str
    registered_at: datetime
    metrics: dict[str, float]
    passed_gates: bool

    @classmethod
    def of(cls, group: ModelGroup, version: ModelVersion) -> VersionSummary:
        """The summary of ``version``."""
        registered = version.registered
        return cls(
            pipeline=group.pipeline,
            version=version.number,
            status=version.status,
            run_id=registered.candidate.run_id,
            registered_at=registered.at,
            metrics=registered.candidate.metrics,
            passed_gates=registered.candidate.passed,
        )


class VersionDetail(VersionSummary):
    """Everything the registry knows of one version."""

    model: ArtifactRef
    lineage: LineageSummary
    report: ArtifactRef | None
    gates: list[GateResult]
    champion_version: int | None
    approval_policy: str
    deployment: DeploymentTarget
    audit: list[AuditEntry]
    deployments: list[DeploymentRecord]
    environments: list[str] = Field(description="The spec's environments, in promotion order.")
    eligible: list[str] = Field(description="Where the version may serve: approved for, or promoted to.")
    dataset_audit: str = Field(description="Who checked out the dataset this version was trained on.")

    @classmethod
    def of(cls, group: ModelGroup, version: ModelVersion) -> VersionDetail:
        """The full record of ``version``."""
        registered = version.registered
        candidate = registered.candidate
        return cls(
            **VersionSummary.of(group, version).model_dump(),
            model=candidate.model,
            lineage=candidate.lineage_summary,
            report=candidate.report,
            gates=candidate.gates,
            champion_version=candidate.champion_version,
            approval_policy=registered.approval,
            deployment=registered.deployment,
            audit=[AuditEntry(action=a.action, by=a.by, at=a.at, comment=a.comment) for a in version.audit],
            deployments=[DeploymentRecord.of(d) for d in group.deployments if d.version == version.number],
            environments=[environment.name for environment in registered.environments],
            eligible=version.eligible,
            dataset_audit=f"/v1/datasets/{group.pipeline}/audit?dataset_version={candidate.dataset_version}",
        )


class GroupSummary(BaseModel):
    """A model group at a glance."""

    pipeline: str
    versions: int
    latest_version: int | None
    champion_version: int | None
    live: dict[str, int] = Field(description="environment → version serving there now")

    @classmethod
    def of(cls, group: ModelGroup) -> GroupSummary:
        """The summary of ``group``."""
        champion = group.champion()
        live = {d.environment: d.version for d in group.deployments if d.until is None}
        return cls(
            pipeline=group.pipeline,
            versions=len(group.versions),
            latest_version=max(group.versions, default=None),
            champion_version=champion.number if champion else None,
            live=live,
        )
