"""Many pipelines in the same warm workers: models loaded on first use, the least recently used unloaded.

A shared worker knows which version each pipeline assigned to it serves (the deploy service tells
every worker), but loads a model only when a request for it arrives, verified and warmed up as any
version is (``LoadedModel.from_store``). Loaded models are kept in least-recently-used order under
a memory budget and a count limit; past either, the coldest model whose requests are all answered
is unloaded (its captures published first). A new version of a loaded pipeline is loaded at once
and switched to between two requests, like a dedicated endpoint's hot swap; the old one is released
when its last request ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from services.deploy.serving.endpoint import LoadedModel
from services.deploy.serving.model_store import stored_bytes
from services.deploy.serving.tracing import Origin
from services.deploy.serving.versions import Served, retire

log = logging.getLogger("conveyor.serving.pool")

# What a loaded model holds in memory, per byte stored: the rebuilt estimator and its
# preprocessing, the ONNX session where it serves, and the monitor's bounded buffers.
MEMORY_PER_STORED_BYTE = 3
# What every loaded model costs beside its own bytes (its monitor, metrics labels, warm-up rows).
MEMORY_PER_MODEL = 2 * 1024 * 1024


class UnknownPipeline(LookupError):
    """No version of this pipeline is assigned to the shared workers."""


@dataclass(frozen=True)
class Assignment:
    """The version a pipeline serves from the shared workers."""

    pipeline: str
    tag: str
    version: int
    correlation_id: UUID


@dataclass(eq=False)
class Resident:
    """A loaded model and what it is estimated to hold in memory."""

    served: Served
    tag: str
    bytes: int


MakeServed = Callable[[LoadedModel, UUID, Origin], Served]


class ModelPool:
    """The pipelines a shared worker serves, and the models it holds loaded."""

    def __init__(self, *, make: MakeServed, budget_bytes: int, max_models: int) -> None:
        self._make = make
        self._budget = budget_bytes
        self._max_models = max_models
        self.assigned: dict[str, Assignment] = {}
        self.loaded: OrderedDict[str, Resident] = OrderedDict()  # coldest first
        self._loading: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.loads = 0
        self.unloads = 0
        self.load_seconds: dict[str, float] = {}  # each pipeline's last load, verification and warm-up

    async def assign(self, assignment: Assignment, *, warm: bool) -> Served | None:
        """Serve ``assignment`` for its pipeline from now on: loaded at once if ``warm`` or already loaded.

        A version that fails to load raises, and the pipeline keeps what it served.
        """
        resident = self.loaded.get(assignment.pipeline)
        if warm or resident is not None:
            served = await self._load(assignment)
            self.assigned[assignment.pipeline] = assignment
            self._keep(assignment.pipeline, Resident(served, assignment.tag, _estimate(assignment.tag)))
            return served
        self.assigned[assignment.pipeline] = assignment
        return None

    async def served(self, pipeline: str) -> Served:
        """The pipeline's model, loaded now if it is not (the next request waits for it, not others)."""
        assignment = self.assigned.get(pipeline)
        if assignment is None:
            raise UnknownPipeline(f"no pipeline named {pipeline!r} is served here")
        resident = self.loaded.get(pipeline)
        if resident is not None and resident.tag == assignment.tag:
            self.loaded.move_to_end(pipeline)
            return resident.served
        async with self._loading.setdefault(pipeline, asyncio.Lock()):
            resident = self.loaded.get(pipeline)
            if resident is not None and resident.tag == assignment.tag:
                return resident.served
            served = await self._load(assignment)
            self._keep(pipeline, Resident(served, assignment.tag, _estimate(assignment.tag)))
            return served

    def remove(self, pipeline: str) -> None:
        """Stop serving a pipeline (its model is released once its requests end)."""
        self.assigned.pop(pipeline, None)
        resident = self.loaded.pop(pipeline, None)
        if resident is not None:
            self._retire(resident)

    def resident(self, pipeline: str) -> Served | None:
        """The pipeline's loaded model, if it is loaded (no load, no change of order)."""
        resident = self.loaded.get(pipeline)
        return resident.served if resident is not None else None

    @property
    def bytes(self) -> int:
        """The estimated memory of every loaded model."""
        return sum(resident.bytes for resident in self.loaded.values())

    def status(self) -> dict[str, Any]:
        """What the deploy service asks of a shared worker."""
        return {
            "assigned": {pipeline: a.version for pipeline, a in sorted(self.assigned.items())},
            "loaded": list(self.loaded),
            "estimated_bytes": self.bytes,
            "loads": self.loads,
            "unloads": self.unloads,
            "load_seconds": dict(self.load_seconds),
        }

    async def stop(self) -> None:
        """Publish every loaded model's captures and let go of them."""
        for task in list(self._retiring):
            task.cancel()
        for resident in self.loaded.values():
            await resident.served.monitor.stop()
        self.loaded.clear()

    async def _load(self, assignment: Assignment) -> Served:
        started = time.perf_counter()
        loaded = await asyncio.to_thread(LoadedModel.from_store, assignment.tag)
        if loaded.card.pipeline != assignment.pipeline or loaded.card.version != assignment.version:
            raise LookupError(f"{assignment.tag} is not {assignment.pipeline} version {assignment.version}")
        served = self._make(loaded, assignment.correlation_id, Origin(None))
        await served.monitor.start()
        self.loads += 1
        self.load_seconds[assignment.pipeline] = round(time.perf_counter() - started, 4)
        return served

    def _keep(self, pipeline: str, resident: Resident) -> None:
        """Hold ``resident`` as the pipeline's model (the hottest), then unload past the limits."""
        old = self.loaded.pop(pipeline, None)
        if old is not None and old.served is not resident.served:
            self._retire(old)
        self.loaded[pipeline] = resident
        while len(self.loaded) > 1 and (len(self.loaded) > self._max_models or self.bytes > self._budget):
            coldest = next(iter(self.loaded))
            if coldest == pipeline:
                break
            log.info("unloading %s (least recently used) to stay within the pool's budget", coldest)
            self._retire(self.loaded.pop(coldest))
            self.unloads += 1

    def _retire(self, resident: Resident) -> None:
        task = asyncio.get_running_loop().create_task(retire(resident.served))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def _estimate(tag: str) -> int:
    return MEMORY_PER_MODEL + MEMORY_PER_STORED_BYTE * stored_bytes(tag)
