"""A worker's model versions: the one it serves, the one it prepares, the ones it just retired.

A new version is loaded inside the warm worker while the old one keeps serving: read from the
BentoML store, its digest checked, its types allow-listed, its warm-up rows answered as recorded
(``LoadedModel.from_store``), in a thread so requests go on meanwhile. The deploy service asks
every worker of the endpoint to prepare; only when all have, it asks them to activate, and each
switches its one reference: a request that started on the old version finishes on it (it holds
the version it began with), so the old model is released when its last request is done. A
version that fails to load or to warm up is never activated.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from faststream.kafka import KafkaBroker

from services.deploy.serving.batching import PredictionBatcher
from services.deploy.serving.endpoint import LoadedModel
from services.deploy.serving.metrics import ServingMetrics
from services.deploy.serving.monitor import Monitor
from services.deploy.serving.predict import Predictions
from services.deploy.serving.runtime import Inputs
from services.deploy.serving.split import Mode, Split
from services.deploy.serving.tracing import Origin
from services.deploy.settings import DeploySettings

log = logging.getLogger("conveyor.serving.versions")

# Retired versions whose predictions can still be joined to feedback sent late.
_RETIRED_KEPT = 2
_DRAIN_POLL_S = 0.01


@dataclass(eq=False)
class Served:
    """One loaded version as a worker serves it: the model, its batcher and its monitor."""

    loaded: LoadedModel
    monitor: Monitor
    correlation_id: UUID
    batch_max_rows: int
    origin: Origin = field(default_factory=lambda: Origin(None))
    calls: int = 0
    in_flight: int = 0
    batcher: PredictionBatcher | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.batch_max_rows > 1:
            self.batcher = PredictionBatcher(self.score, max_rows=self.batch_max_rows)

    @classmethod
    def monitored(
        cls,
        loaded: LoadedModel,
        correlation_id: UUID,
        origin: Origin,
        *,
        settings: DeploySettings,
        metrics: ServingMetrics,
        broker: KafkaBroker | None = None,
    ) -> Served:
        """A loaded version with its own monitor (capturing through ``broker`` when one is shared)."""
        monitor = Monitor(
            card=loaded.card, settings=settings, correlation_id=correlation_id, metrics=metrics, broker=broker
        )
        return cls(
            loaded=loaded,
            monitor=monitor,
            correlation_id=correlation_id,
            batch_max_rows=settings.serving_batch_max_rows,
            origin=origin,
        )

    @property
    def version(self) -> int:
        """The model version."""
        return self.loaded.card.version

    async def predict(self, inputs: Inputs) -> Predictions:
        """Score a request's inputs, with whichever requests wait beside it when batching."""
        if self.batcher is not None:
            return await self.batcher.predict(inputs)
        return self.score(inputs)

    def score(self, inputs: Inputs) -> Predictions:
        """One model call, through the version's runtime."""
        self.calls += 1
        return self.loaded.runtime.predict(inputs)


MakeServed = Callable[[LoadedModel, UUID, Origin], Served]


class Versions:
    """The active version of a worker, and the switch to another one."""

    def __init__(self, active: Served, *, make: MakeServed) -> None:
        self.active = active
        self._make = make
        self._prepared: dict[int, Served] = {}
        self.retired: deque[Served] = deque(maxlen=_RETIRED_KEPT)
        self._retiring: set[asyncio.Task[None]] = set()
        # A release's candidate, answering a share of requests (or a shadow copy of them).
        self.split: Split | None = None

    async def prepare(self, tag: str, correlation_id: UUID, *, trace: Mapping[str, str]) -> Served:
        """Load, verify and warm up a version beside the active one (which keeps serving).

        ``trace`` is the context of the arrival the version came from, for its first prediction.
        """
        served = await self._load(tag, correlation_id, trace)
        stale = self._prepared.pop(served.version, None)
        if stale is not None:
            await stale.monitor.stop()
        self._prepared[served.version] = served
        return served

    async def activate(self, version: int) -> Served:
        """Serve a prepared version from the next request on; the old one retires when its requests end."""
        if version == self.active.version and version not in self._prepared:
            return self.active
        served = self._prepared.pop(version, None)
        if served is None:
            raise LookupError(f"version {version} was not prepared on this worker")
        return self._switch_to(served)

    async def start_split(
        self,
        tag: str,
        correlation_id: UUID,
        *,
        version: int,
        mode: Mode,
        share: float,
        trace: Mapping[str, str],
    ) -> Split:
        """Load a release's candidate beside the active version and give it ``share`` percent of requests.

        Asked again for the same candidate (a window's new share, or the deploy service starting
        again), it only opens a new window.
        """
        split = self.split
        if split is not None and split.candidate.version == version:
            split.mode = mode
            split.new_window(share)
            return split
        await self.end_split()
        served = await self._load(tag, correlation_id, trace)
        if served.version != version:
            await served.monitor.stop()
            raise LookupError(f"{tag} is version {served.version}, not {version}")
        self.split = Split(candidate=served, mode=mode, share=share)
        log.info("version %d beside version %d (%s, %s%%)", served.version, self.active.version, mode, share)
        return self.split

    async def promote_split(self, version: int) -> Served:
        """The release's candidate serves every request from the next one on."""
        split = self.split
        if split is None or split.candidate.version != version:
            if self.active.version == version:
                return self.active  # promoted already (asked again)
            raise LookupError(f"version {version} is not this worker's release candidate")
        self.split = None
        return self._switch_to(split.candidate)

    async def end_split(self) -> None:
        """Take the release's candidate out: the active version answers every request again."""
        split, self.split = self.split, None
        if split is None:
            return
        await split.drain()
        self.retired.append(split.candidate)  # feedback to its predictions still joins
        self._retire_later(split.candidate)
        log.info("version %d taken out; %d serves alone", split.candidate.version, self.active.version)

    async def _load(self, tag: str, correlation_id: UUID, trace: Mapping[str, str]) -> Served:
        loaded = await asyncio.to_thread(LoadedModel.from_store, tag)
        served = self._make(loaded, correlation_id, Origin(trace))
        await served.monitor.start()
        return served

    def _switch_to(self, served: Served) -> Served:
        old, self.active = self.active, served
        self.retired.append(old)
        self._retire_later(old)
        log.info("now serving version %d (was %d)", served.version, old.version)
        gc.freeze()  # the new model lives as long as the worker serves it: keep it out of full collections
        return served

    def _retire_later(self, old: Served) -> None:
        task = asyncio.create_task(retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def discard(self, version: int) -> None:
        """Drop a prepared version that will not be activated."""
        served = self._prepared.pop(version, None)
        if served is not None:
            await served.monitor.stop()

    def monitors(self) -> list[Monitor]:
        """The monitors that may remember a prediction: the active version's first."""
        candidate = [self.split.candidate.monitor] if self.split is not None else []
        return [self.active.monitor, *candidate, *(served.monitor for served in reversed(self.retired))]

    async def stop(self) -> None:
        """Stop every monitor (the captures still queued are published)."""
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.split is not None:
            await self.split.drain()
        candidate = [self.split.candidate] if self.split is not None else []
        for served in (self.active, *candidate, *self._prepared.values(), *self.retired):
            await served.monitor.stop()

    def status(self) -> Mapping[str, Any]:
        """What the deploy service asks of a worker: the version it serves."""
        split = self.split.describe() if self.split is not None else None
        return {"version": self.active.version, "prepared": sorted(self._prepared), "split": split}


async def retire(old: Served) -> None:
    """Publish a retired version's captures once its last request has finished."""
    while old.in_flight:
        await asyncio.sleep(_DRAIN_POLL_S)
    await old.monitor.stop()
