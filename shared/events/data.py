"""Events of data arrival and dataset validation (ingest)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared import topics
from shared.events.envelope import ArtifactRef, Event, Name, RuleResult, Sha256, Text, Uri


class DataArrived(Event):
    """A new CSV or Parquet object for a pipeline is in the landing bucket."""

    topic = topics.DATA_ARRIVED

    uri: Uri = Field(description="s3://<landing bucket>/<key>")
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="Inferred from the key's extension when absent."
    )


class RetrainRequested(Event):
    """Monitoring asks for a new model; ingest re-validates the named (or latest) dataset."""

    topic = topics.RETRAIN_REQUESTED

    reason: Text
    dataset_uri: Uri | None = None
    drift_report_uri: Uri | None = None


class DatasetValidated(Event):
    """A dataset version passed validation and was split for training."""

    topic = topics.DATASET_VALIDATED

    dataset_version: Sha256
    spec_version: Name
    source_uri: Uri
    raw: ArtifactRef
    train: ArtifactRef
    test: ArtifactRef
    profile: ArtifactRef
    report: ArtifactRef
    rows: int = Field(ge=0)
    columns: list[Name] = Field(max_length=10_000)
    warnings: list[RuleResult] = Field(default_factory=list, max_length=10_000)


class DatasetRejected(Event):
    """A dataset failed validation (or could not be read); every failed rule is listed."""

    topic = topics.DATASET_REJECTED

    source_uri: Uri
    dataset_version: Sha256 | None = None
    failures: list[RuleResult] = Field(min_length=1, max_length=10_000)
    report: ArtifactRef | None = None
