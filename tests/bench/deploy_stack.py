"""The deploy service as a process with buckets, ports and consumer groups of its own, for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.deploy.app import CONSUMED, PRODUCED
from services.deploy.settings import DeploySettings
from shared import topics
from shared.clients.events import EventWatcher
from shared.events import (
    BatchPredictionCompleted,
    BatchPredictionFailed,
    BatchPredictionRequested,
    DeploymentTarget,
    Event,
    ModelApproved,
    ModelDeployed,
)
from shared.messaging import ensure_topics
from shared.storage import ArtifactStore, minio_client
from tests.bench.harness import BenchContext, remove_bucket, wait_until
from tests.bench.models import Fitted
from tests.integration.deploy.fixtures import (
    approval,
    model_artifact,
    publish,
    store_training_outputs,
)
from tests.integration.deploy.service_process import DeployProcess, cleanup, wait_gone
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import free_port, free_port_range


def deploy_settings(context: BenchContext, *, name: str, **overrides: Any) -> DeploySettings:
    """Deploy settings no test or other benchmark shares (buckets, groups, ports, state)."""
    tag = f"{context.run_id}-{name}"
    return DeploySettings(**context.settings.model_dump()).model_copy(
        update={
            **overrides,
            "consumer_group_prefix": f"bench-{tag}",
            "artifacts_bucket": f"bench-art-{tag}",
            "landing_bucket": f"bench-land-{tag}",
            "state_dir": context.scratch(f"deploy-{name}"),
            "deploy_port": free_port(),
            "serving_port_base": free_port_range(10, low=12000, high=20000),
            "serving_port_count": 10,
        }
    )


@dataclass
class DeployStack:
    """A running deploy service, a producer to talk to it and a collector of what it publishes."""

    settings: DeploySettings
    store: ArtifactStore
    service: DeployProcess
    collector: EventWatcher
    producer: AIOKafkaProducer

    @classmethod
    async def start(cls, context: BenchContext, *, name: str, **overrides: Any) -> DeployStack:
        """Start the deploy service (and wait until it is ready), with ``overrides`` of its settings."""
        settings = deploy_settings(context, name=name, **overrides)
        store = ArtifactStore.from_settings(settings)
        await asyncio.to_thread(store.ensure_buckets)
        await ensure_topics(settings, [*CONSUMED, *PRODUCED])
        group = f"{settings.consumer_group_prefix}-deploy"
        await start_group_at_end(settings, group_id=group, topics=list(CONSUMED))
        collector = EventWatcher(settings, [*PRODUCED, topics.PREDICTIONS_CAPTURED])
        await collector.start()
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True)
        await producer.start()
        service = DeployProcess(settings)
        await service.start(timeout=120)
        return cls(settings=settings, store=store, service=service, collector=collector, producer=producer)

    async def deploy(self, fitted: Fitted, *, version: int = 1) -> str:
        """Store ``fitted`` as the registry would find it, approve it, and return its endpoint's URL."""
        await publish(self.producer, await self.approval(fitted, version=version, realtime=True))
        found = await self.collector.wait_until(
            ModelDeployed, pipeline=fitted.spec.name, where=lambda e: e.version == version, timeout=180
        )
        return found[0].endpoint_url

    async def approve_for_batch(self, fitted: Fitted, *, version: int = 1) -> None:
        """Approve ``fitted`` for batch jobs only (no endpoint), and wait until the service knows it."""
        await publish(self.producer, await self.approval(fitted, version=version, realtime=False))
        url = f"{self.settings.deploy_base_url}/v1/deployments/{fitted.spec.name}"

        async def known() -> bool:
            async with httpx.AsyncClient(timeout=2.0) as client:
                answer = await client.get(url)
                return answer.is_success and version in answer.json()["versions"]

        await wait_until(known, timeout_s=120, what=f"{fitted.spec.name} v{version} known to deploy")

    async def approval(self, fitted: Fitted, *, version: int, realtime: bool = True) -> ModelApproved:
        """Store ``fitted`` as the registry would find it; the approval that names it."""
        published = await asyncio.to_thread(
            store_training_outputs,
            self.store,
            bucket=self.settings.artifacts_bucket,
            spec=fitted.spec,
            data=fitted.data,
            artifact=model_artifact(fitted.model),
            version=version,
        )
        event = approval(published, version=version)
        target = DeploymentTarget(realtime=realtime, batch=True)
        return event.model_copy(update={"deployment": target})

    def server_pids(self, port: int) -> list[int]:
        """Pids of the BentoML worker processes serving on ``port``.

        Found by the listening socket they share, not by tag: a first version is served by a spare
        worker, which keeps the tag it was started with. The deploy service holds the socket too.
        """
        deploy = self.service.process.pid if self.service.process else None
        return [pid for pid in listening_pids(port) if pid != deploy]

    async def batch(self, event: BatchPredictionRequested, *, timeout_s: float) -> BatchPredictionCompleted:
        """Request a batch job and wait for its completion (a failure is raised)."""
        await publish(self.producer, event)

        def outcome() -> list[Event]:
            caused: list[Event] = [
                *self.collector.of(
                    BatchPredictionCompleted, where=lambda e: e.causation_id == event.event_id
                ),
                *self.collector.of(BatchPredictionFailed, where=lambda e: e.causation_id == event.event_id),
            ]
            return caused

        async def finished() -> bool:
            return bool(outcome())

        await wait_until(finished, timeout_s=timeout_s, what="batch prediction", poll_s=0.02)
        done = outcome()[0]
        if not isinstance(done, BatchPredictionCompleted):
            raise RuntimeError(f"the batch job failed: {done}")
        return done

    async def stop(self) -> None:
        """Stop the service (it stops its endpoints' workers), then remove the scratch buckets."""
        with contextlib.suppress(Exception):
            await self.service.stop()
        left = await wait_gone(self.service.tag(), timeout=30)
        if left:
            cleanup(self.service.tag())  # only processes carrying this run's own tag
        await self.collector.stop()
        await self.producer.stop()
        client = minio_client(self.settings)
        for bucket in self.store.buckets:
            await asyncio.to_thread(remove_bucket, client, bucket)

    @property
    def log_dir(self) -> Path:
        """Where the service and its children log."""
        return self.settings.run_dir / "logs"


def listening_pids(port: int) -> list[int]:
    """Processes holding a socket that listens on TCP ``port`` (IPv4), read from /proc."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:  # 0A: LISTEN
            inodes.add(f"socket:[{inode}]")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
    return found
