"""Events of the model registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared import topics
from shared.events.envelope import (
    ArtifactRef,
    DeploymentTarget,
    EnvironmentName,
    Event,
    LineageSummary,
    Name,
    Text,
)

VersionStatus = Literal["PendingManualApproval", "Approved", "Rejected"]


class ModelRegistered(Event):
    """An evaluated candidate became version N of its pipeline's model group."""

    topic = topics.MODEL_REGISTERED

    version: int = Field(ge=1)
    run_id: Name
    status: VersionStatus


class ServableVersion(Event):
    """What a deploy service needs to serve a version: the base of the events that send one to it."""

    version: int = Field(ge=1)
    run_id: Name
    model: ArtifactRef
    metrics: dict[Name, float]
    lineage: LineageSummary
    deployment: DeploymentTarget
    # The registry's Ed25519 signature (base64) over what decides what is served, and where
    # (shared.approvals): the deploy service serves no approval or promotion without it.
    signature: str = Field(default="", max_length=200)


class ModelApproved(ServableVersion):
    """A model version is approved for serving in its pipeline's first environment."""

    topic = topics.MODEL_APPROVED

    approved_by: Name
    comment: Text = ""
    environment: EnvironmentName = Field(
        default="production", description="The first environment of the pipeline's spec."
    )


class ModelPromoted(ServableVersion):
    """An approved version may now serve in the next environment of its pipeline."""

    topic = topics.MODEL_PROMOTED

    environment: EnvironmentName = Field(description="Where the version goes now.")
    from_environment: EnvironmentName = Field(description="Where it served before.")
    promoted_by: Name
    comment: Text = ""


class ModelRejected(Event):
    """A model version will not be served."""

    topic = topics.MODEL_REJECTED

    version: int = Field(ge=1)
    run_id: Name
    reason: Text
    rejected_by: Name
