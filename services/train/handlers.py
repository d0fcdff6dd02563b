"""Train's Kafka subscriber: a validated dataset in, a trained candidate (or the reason it failed) out."""

from __future__ import annotations

import asyncio

from services.train.training import TrainingError, TrainPorts, run_id_for, train
from shared.events import DatasetValidated, Event, ModelTrained, TrainingFailed
from shared.service import ServiceContext

PRODUCER = "train"


def register_handlers(context: ServiceContext, ports: TrainPorts) -> None:
    """Subscribe train to validated datasets."""

    async def on_dataset_validated(event: DatasetValidated) -> Event:
        """Fit the pipeline's search on the dataset (or find the finished run) and report it."""
        try:
            # In a thread: the event loop keeps the consumer's heartbeats going during a long fit.
            run = await asyncio.to_thread(train, ports, event)
        except TrainingError as error:
            return TrainingFailed.caused_by(
                event,
                producer=PRODUCER,
                run_id=run_id_for(event),
                dataset_version=event.dataset_version,
                spec_version=event.spec_version,
                reason=str(error)[:4000],
                error_type=type(error.__cause__).__name__,
            )
        return ModelTrained.caused_by(
            event,
            producer=PRODUCER,
            dataset_version=event.dataset_version,
            spec_version=event.spec_version,
            test=event.test,
            **run.model_dump(),
        )

    context.subscribe(DatasetValidated, on_dataset_validated)
    context.declare_outputs(ModelTrained, TrainingFailed)
