"""The console process: pages over the registry and deploy APIs, MinIO, and a Kafka feed.

Wires settings → timeline and feed → clients → routes; nothing here knows a page.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from services.console.bias import BiasReader
from services.console.feed import Changes, Feed
from services.console.guard import Guard
from services.console.pages import Ports, error_handlers, routes
from services.console.timeline import Timeline
from shared.clients.deploy import DeployClient
from shared.clients.registry import RegistryClient
from shared.events import ALL_EVENTS
from shared.health import add_health_routes
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.storage import ArtifactStore

HERE = Path(__file__).parent


def templates() -> Jinja2Templates:
    """The page templates; every value they print is HTML-escaped unless a template says otherwise."""
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    return Jinja2Templates(env=environment)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The console's ASGI app; starting it reads every event topic from its beginning."""
    settings = settings or Settings()
    timeline, changes = Timeline(), Changes()
    feed = Feed(settings, timeline, changes)
    store = ArtifactStore.from_settings(settings)
    ports = Ports(
        settings=settings,
        timeline=timeline,
        changes=changes,
        guard=Guard.create(secret=settings.console_secret, tokens=settings.api_tokens),
        registry=RegistryClient(settings.registry_base_url),
        deploy=DeployClient(settings.deploy_base_url, timeout=10.0),
        store=store,
        templates=templates(),
        bias=BiasReader(store, bucket=settings.artifacts_bucket),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings, [event.topic for event in ALL_EVENTS])
        await feed.start()
        await feed.caught_up.wait()  # ready once the pages show everything published before the start
        gc.freeze()  # what was read so far lasts: full collections need not scan it again and again
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await feed.stop()
            ports.registry.close()

    app = FastAPI(
        title="Conveyor console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers=error_handlers(ports),
    )
    app.state.ready = False
    app.state.timeline = timeline
    add_health_routes(app, ready_means="Every event published before the start has been read.")
    app.router.routes.extend(routes(ports))
    app.router.routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    return app
