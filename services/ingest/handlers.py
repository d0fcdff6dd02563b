"""Ingest's Kafka subscribers: an arrival (or a retrain request) in, a validation outcome out."""

from __future__ import annotations

import asyncio

from services.ingest.ingestion import IngestPorts, ingest, rule
from shared.events import DataArrived, DatasetRejected, DatasetValidated, Event, RetrainRequested
from shared.service import ServiceContext

PRODUCER = "ingest"


def register_handlers(context: ServiceContext, ports: IngestPorts) -> None:
    """Subscribe ingest to data arrivals and retrain requests."""

    async def on_data_arrived(event: DataArrived) -> Event:
        """Validate the arrived dataset and emit DatasetValidated or DatasetRejected."""
        outcome = await asyncio.to_thread(
            ingest, ports, pipeline=event.pipeline, uri=event.uri, fmt=event.format
        )
        if outcome.accepted:
            return DatasetValidated.caused_by(event, producer=PRODUCER, **outcome.fields)
        return DatasetRejected.caused_by(event, producer=PRODUCER, **outcome.fields)

    async def on_retrain_requested(event: RetrainRequested) -> Event:
        """Re-ingest the named dataset, or the pipeline's latest one."""
        uri = event.dataset_uri or await asyncio.to_thread(ports.datasets.latest_source, event.pipeline)
        if uri is None:
            failure = rule("retrain.dataset", f"{event.pipeline} has no accepted dataset to retrain on")
            return DatasetRejected.caused_by(event, producer=PRODUCER, source_uri="none", failures=[failure])
        outcome = await asyncio.to_thread(ingest, ports, pipeline=event.pipeline, uri=uri, fmt=None)
        if outcome.accepted:
            return DatasetValidated.caused_by(event, producer=PRODUCER, **outcome.fields)
        return DatasetRejected.caused_by(event, producer=PRODUCER, **outcome.fields)

    context.subscribe(DataArrived, on_data_arrived)
    context.subscribe(RetrainRequested, on_retrain_requested)
    context.declare_outputs(DatasetValidated, DatasetRejected)
