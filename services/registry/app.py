"""The registry process: an HTTP API and Kafka subscribers over one journal in MinIO."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.registry.api import create_router
from services.registry.datasets import DatasetCatalog
from services.registry.datasets_api import create_dataset_router
from services.registry.handlers import register_handlers
from services.registry.journal_store import JournalStore
from services.registry.registry import Registry
from shared import topics
from shared.access import check_own_access
from shared.approvals import ApprovalSigner
from shared.auth import TokenBook
from shared.health import add_health_routes
from shared.messaging import ensure_topics
from shared.service import ServiceContext, build_context
from shared.settings import Settings
from shared.spec_store import SpecStore

NAME = "registry"
CONSUMED = (
    topics.MODEL_EVALUATED,
    topics.MODEL_DEPLOYED,
    *topics.RELEASE_TOPICS,
)
PRODUCED = (topics.MODEL_REGISTERED, topics.MODEL_APPROVED, topics.MODEL_REJECTED, topics.MODEL_PROMOTED)


def create_app(settings: Settings | None = None, *, context: ServiceContext | None = None) -> FastAPI:
    """The registry's ASGI app; starting it loads the journal and joins Kafka."""
    settings = settings or Settings()
    context = context or build_context(NAME, settings)
    specs = SpecStore(context.store, bucket=settings.artifacts_bucket)
    journal = JournalStore(context.store, bucket=settings.artifacts_bucket)
    signer = ApprovalSigner(context.store, bucket=settings.artifacts_bucket)
    registry = Registry(
        journal=journal,
        store=context.store,
        spec_of=specs.get,
        signer=signer,
        shared_journal=settings.registry_replicas > 1,
    )
    register_handlers(context, registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(context.store.ensure_buckets)
        await asyncio.to_thread(check_own_access, context.store, settings, NAME)
        await asyncio.to_thread(signer.load)  # the key pair that signs every ModelApproved
        await ensure_topics(settings, CONSUMED + PRODUCED)
        await _load_while_joining(registry, context)
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await context.broker.stop()
            await asyncio.to_thread(journal.close)
            context.telemetry.shutdown()

    app = FastAPI(
        title="Conveyor model registry",
        version="1",
        description="Model groups, versions, approvals, promotions, where each version is deployed, "
        "and governed checkout of the datasets they were trained on.",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.registry = registry
    tokens = TokenBook.from_secret(settings.api_tokens)
    app.include_router(create_router(registry, tokens=tokens, publish=context.publisher.publish))
    catalog = DatasetCatalog(context.store, bucket=settings.artifacts_bucket)
    app.include_router(create_dataset_router(catalog, tokens=tokens))

    add_health_routes(app, ready_means="The journal is loaded and the Kafka consumers run.")

    return app


async def _load_while_joining(registry: Registry, context: ServiceContext) -> None:
    """Load the journal while Kafka assigns the consumers their partitions (seconds of waiting)."""
    gc.disable()  # the load makes some 300,000 lasting objects: collecting meanwhile only rescans them
    try:
        await asyncio.gather(registry.load(), context.broker.start())  # handlers wait for the load
    finally:
        gc.enable()
    gc.freeze()  # and no full collection need scan them again while requests are served
