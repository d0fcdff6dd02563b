"""Event contracts: the one place producers and consumers import events from."""

from shared.events.data import DataArrived, DatasetRejected, DatasetValidated, RetrainRequested
from shared.events.envelope import (
    ArtifactRef,
    ChampionComparison,
    DeploymentTarget,
    Event,
    GateResult,
    LineageSummary,
    RuleResult,
)
from shared.events.models import ModelEvaluated, ModelTrained, TrainingFailed
from shared.events.registry import (
    ModelApproved,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
    ServableVersion,
    VersionStatus,
)
from shared.events.serving import (
    BatchPredictionCompleted,
    BatchPredictionFailed,
    BatchPredictionRequested,
    CapturedPrediction,
    DeploymentFailed,
    DriftChecked,
    DriftDetected,
    ModelDeployed,
    PredictionsCaptured,
)

ALL_EVENTS: tuple[type[Event], ...] = (
    DataArrived,
    DatasetValidated,
    DatasetRejected,
    ModelTrained,
    TrainingFailed,
    ModelEvaluated,
    ModelRegistered,
    ModelApproved,
    ModelRejected,
    ModelPromoted,
    ModelDeployed,
    DeploymentFailed,
    BatchPredictionRequested,
    BatchPredictionCompleted,
    BatchPredictionFailed,
    PredictionsCaptured,
    DriftChecked,
    DriftDetected,
    RetrainRequested,
)

EVENT_BY_TOPIC: dict[str, type[Event]] = {event.topic: event for event in ALL_EVENTS}

__all__ = [
    "ALL_EVENTS",
    "EVENT_BY_TOPIC",
    "ArtifactRef",
    "BatchPredictionCompleted",
    "BatchPredictionFailed",
    "BatchPredictionRequested",
    "CapturedPrediction",
    "ChampionComparison",
    "DataArrived",
    "DatasetRejected",
    "DatasetValidated",
    "DeploymentFailed",
    "DeploymentTarget",
    "DriftChecked",
    "DriftDetected",
    "Event",
    "GateResult",
    "LineageSummary",
    "ModelApproved",
    "ModelDeployed",
    "ModelEvaluated",
    "ModelPromoted",
    "ModelRegistered",
    "ModelRejected",
    "ModelTrained",
    "PredictionsCaptured",
    "RetrainRequested",
    "RuleResult",
    "ServableVersion",
    "TrainingFailed",
    "VersionStatus",
]
