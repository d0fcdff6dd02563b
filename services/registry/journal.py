"""The registry's durable record: an append-only journal of facts per model group.

Each entry is one immutable object in MinIO; the registry's state is the fold of its
journal, so a restart (or a SIGKILL at any point) rebuilds exactly what was written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from shared.environments import EnvironmentSpec
from shared.events import ArtifactRef, DeploymentTarget, GateResult, LineageSummary, ModelEvaluated
from shared.events.envelope import EnvironmentName, Frozen, Name, Text, Uri
from shared.events.serving import ServingRuntime


class Candidate(Frozen):
    """What the registry keeps of an evaluated candidate."""

    run_id: Name
    correlation_id: UUID
    evaluated_event_id: UUID
    dataset_version: Name
    spec_version: Name
    code_version: Name
    model: ArtifactRef
    lineage: ArtifactRef
    lineage_summary: LineageSummary
    report: ArtifactRef | None
    metrics: dict[Name, float]
    gates: list[GateResult]
    passed: bool
    champion_version: int | None

    @classmethod
    def from_event(cls, event: ModelEvaluated, *, lineage_summary: LineageSummary) -> Candidate:
        """The candidate an evaluation describes."""
        return cls(
            run_id=event.run_id,
            correlation_id=event.correlation_id,
            evaluated_event_id=event.event_id,
            dataset_version=event.dataset_version,
            spec_version=event.spec_version,
            code_version=event.code_version,
            model=event.model,
            lineage=event.lineage,
            lineage_summary=lineage_summary,
            report=event.report,
            metrics=event.metrics,
            gates=event.gates,
            passed=event.passed,
            champion_version=event.champion.champion_version if event.champion else None,
        )


class VersionRegistered(Frozen):
    """Version N of the group was created from a candidate."""

    kind: Literal["registered"] = "registered"
    at: datetime
    version: int = Field(ge=1)
    candidate: Candidate
    approval: Literal["auto", "manual"]
    deployment: DeploymentTarget
    # Entries written before environments existed read as the one environment they had.
    environments: tuple[EnvironmentSpec, ...] = (EnvironmentSpec(name="production"),)


class VersionApproved(Frozen):
    """A version was approved, automatically or by a person."""

    kind: Literal["approved"] = "approved"
    at: datetime
    version: int = Field(ge=1)
    by: Name
    comment: Text = ""


class VersionRejected(Frozen):
    """A version was rejected, by its gates or by a person."""

    kind: Literal["rejected"] = "rejected"
    at: datetime
    version: int = Field(ge=1)
    by: Name
    comment: Text = ""


class VersionDeployed(Frozen):
    """A version went live in an environment."""

    kind: Literal["deployed"] = "deployed"
    at: datetime
    version: int = Field(ge=1)
    environment: Name
    endpoint_url: Uri
    deployed_event_id: UUID
    runtime: ServingRuntime | None = Field(default=None, description="What serves it, and why that one.")


class VersionPromoted(Frozen):
    """A version may now serve in the next environment, by a person's decision or an auto policy."""

    kind: Literal["promoted"] = "promoted"
    at: datetime
    version: int = Field(ge=1)
    environment: EnvironmentName
    from_environment: EnvironmentName
    by: Name
    comment: Text = ""
    event_id: UUID = Field(description="The ModelPromoted published for it, the same on a repeat.")
    cause_id: UUID | None = Field(default=None, description="The ModelDeployed an auto policy followed.")


ReleaseTransition = Literal["started", "step_checked", "paused", "resumed", "promoted", "rolled_back"]


class VersionReleased(Frozen):
    """A step of a version's gradual release in an environment (the deploy service's release events)."""

    kind: Literal["release"] = "release"
    at: datetime
    version: int = Field(ge=1)
    environment: EnvironmentName
    transition: ReleaseTransition
    baseline_version: int = Field(ge=1)
    strategy: Name
    by: Name
    detail: Text = ""
    event_id: UUID = Field(description="The release event recorded, so a redelivery is recorded once.")


JournalEntry = Annotated[
    VersionRegistered
    | VersionApproved
    | VersionRejected
    | VersionDeployed
    | VersionPromoted
    | VersionReleased,
    Field(discriminator="kind"),
]
