"""Events of the model registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared import topics
from shared.events.envelope import ArtifactRef, DeploymentTarget, Event, LineageSummary, Name, Text

VersionStatus = Literal["PendingManualApproval", "Approved", "Rejected"]


class ModelRegistered(Event):
    """An evaluated candidate became version N of its pipeline's model group."""

    topic = topics.MODEL_REGISTERED

    version: int = Field(ge=1)
    run_id: Name
    status: VersionStatus


class ModelApproved(Event):
    """A model version is approved for serving."""

    topic = topics.MODEL_APPROVED

    version: int = Field(ge=1)
    run_id: Name
    model: ArtifactRef
    metrics: dict[Name, float]
    lineage: LineageSummary
    deployment: DeploymentTarget
    approved_by: Name
    comment: Text = ""
    # The registry's Ed25519 signature (base64) over what decides what is served (shared.approvals):
    # the deploy service serves no approval without it.
    signature: str = Field(default="", max_length=200)


class ModelRejected(Event):
    """A model version will not be served."""

    topic = topics.MODEL_REJECTED

    version: int = Field(ge=1)
    run_id: Name
    reason: Text
    rejected_by: Name
