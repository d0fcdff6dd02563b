"""A release's traffic split, from the deploy service's side: one command to every worker of an endpoint.

The candidate is loaded into the endpoint's warm workers beside the active version (verified and
warmed up as any version is), then each worker routes a share of requests to it, or a shadow
copy of every request (``services.deploy.serving.split``). The command is remembered on the
endpoint, so a worker started again after a crash takes its part in the release again.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from services.deploy.rollout import Endpoint, Rollout
from services.deploy.serving.tracing import current_carrier
from services.deploy.workers import ServingError

log = logging.getLogger("conveyor.deploy.traffic")


class TrafficSplit:
    """Opens, reshapes, reads, promotes and closes the split between two versions of an endpoint."""

    def __init__(self, rollout: Rollout) -> None:
        self._rollout = rollout

    async def open(
        self, pipeline: str, *, version: int, tag: str, correlation_id: UUID, mode: str, share: float
    ) -> None:
        """Load ``version`` beside the serving one in every worker; or change nothing (ServingError)."""
        endpoint = self._endpoint(pipeline)
        command = {
            "op": "split",
            "tag": tag,
            "correlation_id": str(correlation_id),
            "version": version,
            "mode": mode,
            "share": share,
            "trace": current_carrier(),
        }
        answers = await self._rollout.ask_all(endpoint, command)
        failed = [answer for answer in answers if isinstance(answer, BaseException)]
        if failed:
            await self._rollout.ask_all(endpoint, {"op": "split_end"})
            endpoint.split = None
            raise ServingError(f"{pipeline} version {version} could not join the endpoint: {failed[0]}")
        endpoint.split = command

    async def reshape(self, pipeline: str, *, share: float) -> None:
        """Give the candidate ``share`` percent from now on, and open a new window in every worker."""
        endpoint = self._endpoint(pipeline)
        if endpoint.split is None:
            raise ServingError(f"{pipeline} has no release in its endpoint")
        endpoint.split = {**endpoint.split, "share": share}
        for worker_id, answer in _numbered(await self._rollout.ask_all(endpoint, endpoint.split)):
            if isinstance(answer, BaseException):  # it died: started again, it gets the new command
                log.warning("%s: worker %d did not take share %s: %s", pipeline, worker_id, share, answer)

    async def tallies(self, pipeline: str) -> list[dict[str, Any]]:
        """Every worker's tallies of the current window (a worker that cannot answer is left out)."""
        endpoint = self._endpoint(pipeline)
        version = endpoint.split["version"] if endpoint.split else None
        answers = await self._rollout.ask_all(endpoint, {"op": "split_tallies"})
        return [
            answer["tallies"]
            for answer in answers
            if isinstance(answer, dict) and answer["tallies"] and answer["tallies"]["version"] == version
        ]

    async def promote(self, pipeline: str, *, version: int, tag: str, correlation_id: UUID) -> None:
        """The candidate serves every request: switched to in place, where each worker already holds it."""
        endpoint = self._endpoint(pipeline)
        answers = await self._rollout.ask_all(endpoint, {"op": "split_promote", "version": version})
        endpoint.split = None
        if any(isinstance(answer, BaseException) for answer in answers):
            # A worker without the candidate (started again meanwhile) loads it the usual way.
            await self._rollout.roll_out(
                pipeline=pipeline, port=endpoint.port, version=version, tag=tag, correlation_id=correlation_id
            )
            return
        endpoint.version = version
        endpoint.arguments = {**endpoint.arguments, "model_tag": tag, "correlation_id": str(correlation_id)}

    async def close(self, pipeline: str) -> None:
        """Take the candidate out of every worker: the active version answers everyone."""
        endpoint = self._rollout.endpoints.get(pipeline)
        if endpoint is None:
            return
        endpoint.split = None
        for worker_id, answer in _numbered(await self._rollout.ask_all(endpoint, {"op": "split_end"})):
            if isinstance(answer, BaseException):
                log.warning("%s: worker %d did not drop the candidate: %s", pipeline, worker_id, answer)

    def _endpoint(self, pipeline: str) -> Endpoint:
        endpoint = self._rollout.endpoints.get(pipeline)
        if endpoint is None or not endpoint.alive:
            raise ServingError(f"{pipeline} has no running endpoint")
        return endpoint


def _numbered(answers: list[Any]) -> list[tuple[int, Any]]:
    return list(enumerate(answers, start=1))
