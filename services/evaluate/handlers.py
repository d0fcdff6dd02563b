"""Evaluate's Kafka subscriber: a trained candidate in, its evaluation out."""

from __future__ import annotations

import asyncio

from services.evaluate.evaluation import EvaluatePorts, evaluate
from shared.events import ModelEvaluated, ModelTrained
from shared.service import ServiceContext

PRODUCER = "evaluate"


def register_handlers(context: ServiceContext, ports: EvaluatePorts) -> None:
    """Subscribe evaluate to trained candidates."""

    async def on_model_trained(event: ModelTrained) -> ModelEvaluated:
        """Score the candidate on held-out data, compare it with the champion and apply the gates."""
        verdict = await asyncio.to_thread(evaluate, ports, event)
        return ModelEvaluated.caused_by(
            event,
            producer=PRODUCER,
            run_id=event.run_id,
            dataset_version=event.dataset_version,
            spec_version=event.spec_version,
            code_version=event.code_version,
            model=event.model,
            lineage=event.lineage,
            **verdict.model_dump(),
        )

    context.subscribe(ModelTrained, on_model_trained)
    context.declare_outputs(ModelEvaluated)
