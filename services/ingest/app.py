"""The ingest process: validates arrived datasets into immutable, versioned training data."""

from __future__ import annotations

from faststream import FastStream

from services.ingest.datasets import DatasetIndex
from services.ingest.handlers import register_handlers
from services.ingest.ingestion import IngestPorts
from shared import topics
from shared.pipeline_spec import import_estimators
from shared.service import ServiceContext, after_startup_in_thread, build_context, create_service_app
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.uris import AllowedLocation

NAME = "ingest"
TOPICS = (topics.DATA_ARRIVED, topics.RETRAIN_REQUESTED, topics.DATASET_VALIDATED, topics.DATASET_REJECTED)


def create_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastStream:
    """The ingest service, wired to Kafka and MinIO."""
    settings = settings or Settings()
    context = context or build_context(NAME, settings)
    ports = IngestPorts(
        store=context.store,
        specs=SpecStore(context.store, bucket=settings.artifacts_bucket),
        datasets=DatasetIndex(context.store, bucket=settings.artifacts_bucket),
        landing=AllowedLocation(settings.landing_bucket),
        max_memory_mb=settings.ingest_max_memory_mb,
    )
    app = create_service_app(context, topics=TOPICS, register=lambda ctx: register_handlers(ctx, ports))
    after_startup_in_thread(app, import_estimators)  # reading a spec imports its estimator
    return app
