"""Events of training and evaluation (train, evaluate)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared import topics
from shared.events.envelope import (
    ArtifactRef,
    ChampionComparison,
    Event,
    GateResult,
    Name,
    Sha256,
    Text,
)


class ModelTrained(Event):
    """A candidate model was fitted and stored with its lineage record."""

    topic = topics.MODEL_TRAINED

    run_id: Name = Field(description="Derived from dataset version + spec version + code version.")
    dataset_version: Sha256
    spec_version: Name
    code_version: Name
    model: ArtifactRef
    lineage: ArtifactRef
    test: ArtifactRef
    hyperparameters: dict[Name, Any] = Field(default_factory=dict)
    cv_metric: Name
    cv_score: float
    training_seconds: float = Field(ge=0)


class TrainingFailed(Event):
    """Training could not produce a model."""

    topic = topics.TRAINING_FAILED

    run_id: Name
    dataset_version: Sha256
    spec_version: Name
    reason: Text
    error_type: Name


class ModelEvaluated(Event):
    """A candidate was scored on held-out data and the quality gates were applied."""

    topic = topics.MODEL_EVALUATED

    run_id: Name
    dataset_version: Sha256
    spec_version: Name
    code_version: Name
    model: ArtifactRef
    lineage: ArtifactRef
    metrics: dict[Name, float]
    champion: ChampionComparison | None = None
    gates: list[GateResult] = Field(default_factory=list)
    passed: bool
    report: ArtifactRef | None = None
    failure_reason: Text | None = Field(
        default=None, description="Set when the candidate could not be evaluated at all."
    )
