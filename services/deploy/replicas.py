"""Deploy service replicas on one host: one owner per endpoint, and takeover when the owner dies.

Replicas of one environment's deploy service share its consumer group and the deployment records
in MinIO. An endpoint's owner is the replica whose process holds its listening socket: the port
is the lock, and the kernel frees it when the owner dies (its workers die with it, by
PR_SET_PDEATHSIG). Every ``serving_watch_interval_s`` each replica reads the records again and
serves every active version that no live process serves, so a survivor takes a dead owner's
endpoints within that interval plus a worker's start. An approval lands on whichever replica
consumes the pipeline's partition: it writes the record, and when another replica owns the
endpoint it waits for the owner to switch (the owner's next watch) before announcing
ModelDeployed. Gradual releases and the shared workers run in the replica that owns them.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from services.deploy.records import DeploymentRecord
from services.deploy.rollout import Rollout
from services.deploy.settings import DeploySettings
from services.deploy.workers import ServingError, port_in_use

_POLL_S = 0.2


def owned_elsewhere(settings: DeploySettings, rollout: Rollout, record: DeploymentRecord) -> bool:
    """Whether another replica serves the pipeline's endpoint (only ever with replicas)."""
    if settings.deploy_replicas == 1 or record.shared or record.pipeline in rollout.endpoints:
        return False
    return port_in_use(settings.serving_host, record.port)


async def until_served_elsewhere(url: str, version: int, *, timeout_s: float) -> None:
    """Wait until the owner's endpoint at ``url`` answers ``version`` (ServingError past ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                answer = await client.get(f"{url}/v1/monitoring/performance")
                if answer.is_success and answer.json().get("version") == version:
                    return
            except httpx.HTTPError:
                pass  # the owner is switching or starting: ask again
            await asyncio.sleep(_POLL_S)
    raise ServingError(
        f"the replica that owns {url} did not serve version {version} within {timeout_s:.0f} s"
    )
