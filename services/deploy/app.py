"""The deploy process: a control API and Kafka subscribers over the endpoints it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from services.deploy.api import create_router
from services.deploy.artifacts import load_store_code
from services.deploy.batch import BatchJobs
from services.deploy.deployments import Deployer
from services.deploy.drift import CooldownStore, DriftMonitor, read_baseline
from services.deploy.handlers import register_handlers
from services.deploy.processes import ProcessBook
from services.deploy.records import DeploymentRecords
from services.deploy.rollout import Rollout
from services.deploy.settings import DeploySettings
from shared import topics
from shared.access import check_own_access
from shared.auth import TokenBook
from shared.environments import DEFAULT_ENVIRONMENT
from shared.health import add_health_routes
from shared.messaging import ensure_topics
from shared.service import ServiceContext, build_context
from shared.spec_store import SpecStore

NAME = "deploy"
CONSUMED = (
    topics.MODEL_APPROVED,
    topics.MODEL_PROMOTED,
    topics.BATCH_PREDICTION_REQUESTED,
    topics.PREDICTIONS_CAPTURED,
)
PRODUCED = (
    topics.MODEL_DEPLOYED,
    topics.DEPLOYMENT_FAILED,
    topics.BATCH_PREDICTION_COMPLETED,
    topics.BATCH_PREDICTION_FAILED,
    topics.DRIFT_CHECKED,
    topics.DRIFT_DETECTED,
    topics.RETRAIN_REQUESTED,
    *topics.RELEASE_TOPICS,
)


def configure_bentoml(settings: DeploySettings) -> None:
    """Point BentoML at this service's model store and turn its usage tracking off (before first use)."""
    os.environ["BENTOML_HOME"] = str(settings.bentoml_home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"


def service_name(environment: str) -> str:
    """``deploy`` for production, ``deploy-<environment>`` otherwise: its own consumer group and traces."""
    return NAME if environment == DEFAULT_ENVIRONMENT else f"{NAME}-{environment}"


def create_app(settings: DeploySettings | None = None, *, context: ServiceContext | None = None) -> FastAPI:
    """The deploy service's ASGI app; starting it restores the endpoints and joins Kafka."""
    settings = settings or DeploySettings()
    configure_bentoml(settings)
    context = context or build_context(service_name(settings.environment), settings)
    bucket = settings.artifacts_bucket
    specs = SpecStore(context.store, bucket=bucket)
    processes = ProcessBook(settings.run_dir)
    rollout = Rollout(settings, processes)
    deployer = Deployer(
        settings=settings,
        store=context.store,
        records=DeploymentRecords(context.store, bucket=bucket, environment=settings.environment),
        specs=specs,
        rollout=rollout,
        publish=context.publisher.publish,
    )
    batches = BatchJobs(
        store=context.store, bucket=bucket, lookup=deployer.record, threads=settings.batch_threads
    )
    drift = DriftMonitor(
        store=context.store,
        baselines=partial(read_baseline, context.store, specs),
        lookup=deployer.record,
        cooldowns=CooldownStore(context.store, bucket=bucket),
        bucket=bucket,
    )
    register_handlers(
        context, deployer=deployer, batches=batches, drift=drift, environment=settings.environment
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(processes.sweep)
        await rollout.spares.start()  # importing while the rest starts
        await asyncio.to_thread(load_store_code)
        await asyncio.to_thread(context.store.ensure_buckets)
        await asyncio.to_thread(check_own_access, context.store, settings, NAME)
        await ensure_topics(settings, CONSUMED + PRODUCED)
        await deployer.load()
        watcher: asyncio.Task[None] | None = None
        try:
            await deployer.heal()  # bring back what was serving before the last stop
            await context.broker.start()
            await deployer.releases.resume_all()  # each candidate beside its baseline again
            watcher = asyncio.create_task(deployer.watch(interval_s=settings.serving_watch_interval_s))
            app.state.ready = True
            yield
        finally:
            app.state.ready = False
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await context.broker.stop()
            await deployer.stop()
            context.telemetry.shutdown()

    app = FastAPI(
        title="Conveyor deploy service",
        version="1",
        description="Pipeline endpoints (BentoML), zero-downtime switches, rollbacks, batch jobs, drift.",
        lifespan=lifespan,
    )
    app.state.ready = False
    app.state.deployer = deployer
    tokens = TokenBook.from_secret(settings.api_tokens)
    app.include_router(
        create_router(
            deployer, tokens=tokens, environment=settings.environment, publish=context.publisher.publish
        )
    )

    add_health_routes(app, ready_means="The endpoints are restored and the Kafka consumers run.")

    return app
