"""The train process: fits candidates for validated datasets and stores them with their lineage."""

from __future__ import annotations

import functools
import os

from faststream import FastStream

from services.train.handlers import register_handlers
from services.train.training import TrainPorts
from services.train.workers import warm
from shared import topics
from shared.service import ServiceContext, after_startup_in_thread, build_context, create_service_app
from shared.settings import Settings
from shared.spec_store import SpecStore

NAME = "train"
TOPICS = (topics.DATASET_VALIDATED, topics.MODEL_TRAINED, topics.TRAINING_FAILED)


def create_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastStream:
    """The train service, wired to Kafka and MinIO."""
    settings = settings or Settings()
    context = context or build_context(NAME, settings)
    ports = TrainPorts(
        store=context.store,
        specs=SpecStore(context.store, bucket=settings.artifacts_bucket),
        bucket=settings.artifacts_bucket,
        training_image=settings.training_image,
        n_jobs=settings.train_n_jobs or os.cpu_count() or 1,
    )
    app = create_service_app(context, topics=TOPICS, register=lambda ctx: register_handlers(ctx, ports))
    # A search that comes before the workers are warm waits for the same workers rather than
    # starting its own.
    after_startup_in_thread(app, functools.partial(warm, ports.n_jobs))
    return app
