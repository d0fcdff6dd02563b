"""The registry's Kafka subscribers: typed event in, the registry's work, typed events out."""

from __future__ import annotations

from services.registry.registry import Registry
from shared.events import (
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
)
from shared.events.releases import RELEASE_EVENTS, ReleaseEvent
from shared.service import ServiceContext


def register_handlers(context: ServiceContext, registry: Registry) -> None:
    """Subscribe the registry to evaluated candidates and deployments."""

    async def on_model_evaluated(event: ModelEvaluated) -> list[Event]:
        """Register the candidate as the group's next version and apply its approval policy."""
        return await registry.register(event)

    async def on_model_deployed(event: ModelDeployed) -> list[Event]:
        """Record where the version now serves; promote it onwards where the next policy is auto."""
        return await registry.record_deployment(event)

    async def on_release(event: ReleaseEvent) -> list[Event]:
        """Record a step of a version's gradual release in the history of its environment."""
        return await registry.record_release(event)

    context.subscribe(ModelEvaluated, on_model_evaluated)
    context.subscribe(ModelDeployed, on_model_deployed)
    for kind in RELEASE_EVENTS:
        context.subscribe(kind, on_release)
    context.declare_outputs(ModelRegistered, ModelApproved, ModelRejected, ModelPromoted)
