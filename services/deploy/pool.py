"""Pipelines served from the shared workers: one port for all of them, each at ``/pipelines/<name>``.

The shared workers are one more endpoint of the rollout (started, watched and started again like
any), running the pool service (``services.deploy.serving.pool_service``). Assigning a version
to a pipeline first has worker 1 load it, verified and warmed up, so a version that cannot serve
is refused before any request reaches it; the other workers load it on first use. Every
assignment is also written to the workers' home (``assignments.json``, replaced whole), where a
worker started again after a crash reads them before it answers its first request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any
from uuid import UUID

from services.deploy.rollout import Endpoint, Rollout
from services.deploy.serving import control
from services.deploy.settings import DeploySettings
from services.deploy.workers import ServingError

log = logging.getLogger("conveyor.deploy.pool")

# The shared workers' name among the rollout's endpoints: not a valid pipeline name, so never one.
SHARED = "_shared"


class SharedWorkers:
    """Assigns pipelines' versions to the shared workers, starting them when needed."""

    def __init__(self, settings: DeploySettings, rollout: Rollout) -> None:
        self._settings = settings
        self._rollout = rollout

    def url(self, pipeline: str) -> str:
        """A shared pipeline's endpoint URL (clients append /v1/predict as to any endpoint)."""
        return f"{self._rollout.endpoint_url(self._settings.pool_port)}/pipelines/{pipeline}"

    def serving(self, pipeline: str) -> int | None:
        """The version the running shared workers serve for ``pipeline``, if any."""
        endpoint = self._rollout.endpoints.get(SHARED)
        if endpoint is None or not endpoint.alive:
            return None
        assignment = endpoint.assignments.get(pipeline)
        return int(assignment["version"]) if assignment else None

    async def assign(self, pipeline: str, *, version: int, tag: str, correlation_id: UUID) -> None:
        """Serve ``version`` for ``pipeline`` from the shared workers; or change nothing (ServingError)."""
        endpoint = await self._running()
        command = {
            "op": "assign",
            "pipeline": pipeline,
            "tag": tag,
            "version": version,
            "correlation_id": str(correlation_id),
        }
        try:
            await self._rollout.ask(endpoint, 1, {**command, "warm": True})
        except control.ControlError as error:
            raise ServingError(f"{pipeline} version {version} was not served: {error}") from None
        endpoint.assignments[pipeline] = command
        await asyncio.to_thread(write_assignments, endpoint.home, endpoint.assignments)
        for worker_id in range(2, len(endpoint.workers) + 1):
            try:
                await self._rollout.ask(endpoint, worker_id, command)
            except control.ControlError as error:  # it died: started again, it learns the assignment
                log.warning("shared worker %d did not take %s v%d: %s", worker_id, pipeline, version, error)
        log.info("%s now serves version %d from the shared workers", pipeline, version)

    async def status(self) -> list[dict[str, Any]]:
        """Each shared worker's pipelines and loaded models (empty when they are not running)."""
        endpoint = self._rollout.endpoints.get(SHARED)
        if endpoint is None:
            return []
        answers = await self._rollout.ask_all(endpoint, {"op": "status"})
        return [
            answer if isinstance(answer, dict) else {"worker": worker_id, "error": str(answer)}
            for worker_id, answer in enumerate(answers, start=1)
        ]

    async def _running(self) -> Endpoint:
        endpoint = self._rollout.endpoints.get(SHARED)
        if endpoint is not None and (endpoint.alive or await self._rollout.revive(SHARED)):
            return endpoint
        if endpoint is not None:
            await self._rollout.stop(SHARED)
        return await self._rollout.start_shared(name=SHARED, port=self._settings.pool_port)


def write_assignments(home: Path, assignments: dict[str, dict[str, Any]]) -> None:
    """Every pipeline's assignment, where the shared workers read them at start (replaced whole)."""
    path = home / control.ASSIGNMENTS_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(list(assignments.values())))
    os.replace(partial, path)
