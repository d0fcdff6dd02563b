"""The composition root every service shares: settings → telemetry → broker → ports → handlers."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from faststream import FastStream
from faststream.kafka import KafkaBroker

from shared.access import check_own_access
from shared.events import Event
from shared.logs import configure_logging
from shared.messaging import KafkaEventPublisher, create_broker, ensure_topics, subscribe
from shared.messaging.consumer import E, Handler
from shared.settings import Settings
from shared.storage import ArtifactStore
from shared.telemetry import Telemetry, setup_telemetry


@dataclass(frozen=True)
class ServiceContext:
    """The ports a service's handlers are wired to."""

    name: str
    settings: Settings
    telemetry: Telemetry
    broker: KafkaBroker
    publisher: KafkaEventPublisher
    store: ArtifactStore

    @property
    def group_id(self) -> str:
        """The Kafka consumer group of this service."""
        return f"{self.settings.consumer_group_prefix}-{self.name}"

    def subscribe(self, event_type: type[E], handler: Handler[E]) -> None:
        """Consume ``event_type`` with ``handler`` in this service's consumer group, safely."""
        subscribe(
            self.broker,
            event_type=event_type,
            handler=handler,
            group_id=self.group_id,
            publisher=self.publisher,
            settings=self.settings,
        )

    def declare_outputs(self, *event_types: type[Event]) -> None:
        """Name the events this service publishes, so its AsyncAPI document lists them."""
        for event_type in event_types:
            self.broker.publisher(
                event_type.topic,
                schema=event_type,
                title=f"{event_type.topic}:{self.name}",
                description=(event_type.__doc__ or "").strip(),
            )


def build_context(name: str, settings: Settings, *, telemetry: Telemetry | None = None) -> ServiceContext:
    """Create the clients a service needs (no connection is opened yet)."""
    telemetry = telemetry or setup_telemetry(name, settings)
    broker = create_broker(settings, telemetry=telemetry)
    return ServiceContext(
        name=name,
        settings=settings,
        telemetry=telemetry,
        broker=broker,
        publisher=KafkaEventPublisher(broker),
        store=ArtifactStore.from_settings(settings),
    )


def create_service_app(
    context: ServiceContext,
    *,
    topics: Iterable[str],
    register: Callable[[ServiceContext], None],
) -> FastStream:
    """A FastStream app that prepares buckets and topics, then runs the registered handlers."""
    register(context)
    topic_names = tuple(topics)

    async def prepare() -> None:
        context.store.ensure_buckets()
        check_own_access(context.store, context.settings, context.name)  # another's keys: stop here
        await ensure_topics(context.settings, topic_names)

    logger = logging.getLogger(f"conveyor.{context.name}")

    def announce() -> None:
        # infra.services waits for this line to call a service ready.
        logger.info("%s ready (pid %d)", context.name, os.getpid())

    app = FastStream(
        context.broker,
        logger=logger,
        on_startup=[prepare],
        after_startup=[announce],
        on_shutdown=[context.telemetry.shutdown],
    )
    return app


def after_startup_in_thread(app: FastStream, work: Callable[[], object]) -> None:
    """Run ``work`` in a thread once ``app`` has started; the service takes events meanwhile.

    For what the first event would otherwise wait for (worker processes, imports). A failure is
    logged, never fatal: the first event then pays for the work itself.
    """
    running: set[asyncio.Future[object]] = set()
    logger = logging.getLogger("conveyor.service")

    def finished(task: asyncio.Future[object]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("work after startup failed: %r", task.exception())

    async def start() -> None:
        task = asyncio.ensure_future(asyncio.to_thread(work))
        running.add(task)  # asyncio keeps only weak references to tasks
        task.add_done_callback(finished)

    app.after_startup(start)


def run_app(name: str, create_app: Callable[[], FastStream]) -> None:
    """Run a service until SIGINT or SIGTERM, logging JSON lines."""
    configure_logging(name)
    asyncio.run(create_app().run())
