"""The e2e stack's services, each started as its own Kafka principal (the cluster requires SASL).

``tests.e2e.conftest.running_stack`` gives every process one environment; here each also gets the
CONVEYOR_KAFKA_SASL_* variables of its own principal, as ``conveyor up`` gives them
(``infra.kafka_access.service_principal``). The cluster is new for the suite, so the consumer
groups have nothing earlier to skip.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from infra.kafka_access import service_principal
from shared.clients.events import EventWatcher
from shared.events import ALL_EVENTS
from shared.messaging import ensure_topics
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore
from tests.e2e.conftest import SERVICES, Stack
from tests.integration.processes import ServiceProcess


@asynccontextmanager
async def running_sasl_stack(settings: Settings, env: dict[str, str]) -> AsyncIterator[Stack]:
    """All five services, each as its own principal, until the block ends; then stopped by pid.

    ``settings``: the suite's own clients' (the watcher's), as ``admin``.
    """
    topics = [event.topic for event in ALL_EVENTS]
    await ensure_topics(settings, topics)
    watcher = EventWatcher(settings, topics)
    await watcher.start()
    log_dir: Path = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    urls = {"registry": settings.registry_base_url, "deploy": settings.deploy_base_url}
    processes: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICES:
            url = urls.get(name)
            process = ServiceProcess(
                name,
                env={**env, **service_principal(settings, name)},
                log_dir=log_dir,
                ready_url=f"{url}/health/ready" if url else None,
            )
            await asyncio.to_thread(process.start, timeout=120)
            processes[name] = process
        store = ArtifactStore.from_settings(settings)
        yield Stack(
            settings=settings,
            processes=processes,
            watcher=watcher,
            specs=SpecStore(store, bucket=settings.artifacts_bucket),
            store=store,
        )
    finally:
        for process in reversed(processes.values()):
            await asyncio.to_thread(process.stop)
        await watcher.stop()
