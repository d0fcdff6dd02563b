"""The deploy service's Kafka subscribers: typed event in, the work, typed events out."""

from __future__ import annotations

from services.deploy.batch import BatchJobs
from services.deploy.deployments import Deployer
from services.deploy.drift import DriftMonitor
from shared.events import (
    BatchPredictionCompleted,
    BatchPredictionFailed,
    BatchPredictionRequested,
    DeploymentFailed,
    DriftChecked,
    DriftDetected,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelPromoted,
    PredictionsCaptured,
    RetrainRequested,
)
from shared.events.releases import RELEASE_EVENTS
from shared.service import ServiceContext


def register_handlers(
    context: ServiceContext, *, deployer: Deployer, batches: BatchJobs, drift: DriftMonitor, environment: str
) -> None:
    """Subscribe the deploy service to approvals, promotions, batch requests and captured predictions.

    Each deploy service runs for one environment: it serves what is approved for it (the first
    environment of a spec) or promoted to it, and ignores what is bound for another.
    """

    async def on_model_approved(event: ModelApproved) -> list[Event]:
        """Serve the approved version behind its pipeline's endpoint, or release it beside the old one."""
        return await deployer.approve(event) if event.environment == environment else []

    async def on_model_promoted(event: ModelPromoted) -> list[Event]:
        """Serve the version promoted to this environment."""
        return await deployer.approve(event) if event.environment == environment else []

    async def on_batch_prediction_requested(event: BatchPredictionRequested) -> Event | None:
        """Score the requested file with the pipeline's model."""
        return await batches.run(event) if event.environment == environment else None

    async def on_predictions_captured(event: PredictionsCaptured) -> list[Event]:
        """Window the captured features and check them for drift."""
        return await drift.on_captured(event)

    context.subscribe(ModelApproved, on_model_approved)
    context.subscribe(ModelPromoted, on_model_promoted)
    context.subscribe(BatchPredictionRequested, on_batch_prediction_requested)
    context.subscribe(PredictionsCaptured, on_predictions_captured)
    context.declare_outputs(
        ModelDeployed,
        DeploymentFailed,
        BatchPredictionCompleted,
        BatchPredictionFailed,
        DriftChecked,
        DriftDetected,
        RetrainRequested,
        *RELEASE_EVENTS,
    )
