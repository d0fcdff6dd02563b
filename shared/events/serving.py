"""Events of deployment, batch prediction and monitoring (deploy)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared import topics
from shared.events.envelope import EnvironmentName, Event, Frozen, Name, Text, Uri

FeatureValue = float | int | str | bool | None


class ServingRuntime(Frozen):
    """Which runtime computes a version's predictions, and why that one."""

    name: Literal["sklearn", "onnxruntime"] = Field(
        default="sklearn",
        description="onnxruntime only where proven equal to scikit-learn on the test split.",
    )
    reason: Text = Field(default="", description="The proof, or why the version serves with scikit-learn.")


class ModelDeployed(Event):
    """A model version is serving at an endpoint."""

    topic = topics.MODEL_DEPLOYED

    version: int = Field(ge=1)
    endpoint_url: Uri
    environment: Name
    runtime: ServingRuntime | None = Field(default=None, description="The runtime serving it (added field).")


class DeploymentFailed(Event):
    """A model version could not be deployed; the version already serving keeps serving."""

    topic = topics.DEPLOYMENT_FAILED

    version: int = Field(ge=1)
    reason: Text


class BatchPredictionRequested(Event):
    """Score an object-store file with a pipeline's model."""

    topic = topics.BATCH_PREDICTION_REQUESTED

    input_uri: Uri
    version: int | None = Field(default=None, ge=1, description="None: the version now serving.")
    environment: EnvironmentName = Field(
        default="production", description="The deploy service (CONVEYOR_ENVIRONMENT) that scores it."
    )
    engine: Literal["local", "spark"] = Field(
        default="local",
        description="local: in the deploy service's process; spark: on a Spark cluster (added field).",
    )
    spark_master: Uri | None = Field(
        default=None,
        description="The Spark master (spark://host:port); None: the deploy service's own (added field).",
    )


class BatchPredictionCompleted(Event):
    """A batch job wrote its predictions."""

    topic = topics.BATCH_PREDICTION_COMPLETED

    version: int = Field(ge=1)
    input_uri: Uri
    output_uri: Uri
    rows: int = Field(ge=0)
    duration_seconds: float = Field(ge=0)


class BatchPredictionFailed(Event):
    """A batch job could not complete."""

    topic = topics.BATCH_PREDICTION_FAILED

    input_uri: Uri
    version: int | None = Field(default=None, ge=1)
    reason: Text


class CapturedPrediction(Frozen):
    """One served prediction, as the monitoring side sees it."""

    prediction_id: Name
    captured_at: datetime
    features: dict[Name, FeatureValue]
    prediction: FeatureValue


class PredictionsCaptured(Event):
    """Monitoring feedback: a sample of served predictions."""

    topic = topics.PREDICTIONS_CAPTURED

    version: int = Field(ge=1)
    predictions: list[CapturedPrediction] = Field(max_length=10_000)


class DriftChecked(Event):
    """A monitoring report: live features compared with the training profile."""

    topic = topics.DRIFT_CHECKED

    version: int = Field(ge=1)
    window_size: int = Field(ge=0)
    psi: dict[Name, float]
    threshold: float
    report_uri: Uri | None = None


class DriftDetected(Event):
    """Live features drifted past the pipeline's threshold."""

    topic = topics.DRIFT_DETECTED

    version: int = Field(ge=1)
    psi: dict[Name, float]
    threshold: float
    drifted_features: list[Name]
