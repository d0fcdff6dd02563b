"""The evaluate process: scores candidates on held-out data and applies the quality gates."""

from __future__ import annotations

from faststream import FastStream

from services.evaluate.evaluation import EvaluatePorts
from services.evaluate.handlers import register_handlers
from services.evaluate.loaded_models import LoadedModels
from shared import topics
from shared.clients.registry import RegistryClient
from shared.pipeline_spec import import_estimators
from shared.service import ServiceContext, after_startup_in_thread, build_context, create_service_app
from shared.settings import Settings
from shared.spec_store import SpecStore

NAME = "evaluate"
TOPICS = (topics.MODEL_TRAINED, topics.MODEL_EVALUATED)


def create_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastStream:
    """The evaluate service, wired to Kafka, MinIO and the registry."""
    settings = settings or Settings()
    context = context or build_context(NAME, settings)
    ports = EvaluatePorts(
        store=context.store,
        specs=SpecStore(context.store, bucket=settings.artifacts_bucket),
        bucket=settings.artifacts_bucket,
        champion_of=RegistryClient(settings.registry_base_url).champion,
        models=LoadedModels(context.store, budget_bytes=settings.evaluate_model_cache_mb * 1024**2),
    )
    app = create_service_app(context, topics=TOPICS, register=lambda ctx: register_handlers(ctx, ports))
    after_startup_in_thread(app, import_estimators)  # reading a spec imports its estimator
    return app
