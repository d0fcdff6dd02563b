"""Where a pipeline's active version serves: its own workers on its port, the shared workers, or the
endpoint of another replica of this deploy service (``services.deploy.replicas``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.deploy.artifacts import ensure_imported
from services.deploy.pool import SharedWorkers
from services.deploy.records import ApprovedVersion, DeploymentRecord
from services.deploy.replicas import owned_elsewhere, until_served_elsewhere
from services.deploy.rollout import Rollout
from services.deploy.settings import DeploySettings
from services.deploy.workers import ServingError, can_listen
from shared.storage import ArtifactStore

log = logging.getLogger("conveyor.deploy")

# What makes a switch stick: writing the record that names the version now serving.
Commit = Callable[[], Awaitable[None]]


class Endpoints:
    """Serves a record's versions wherever the record says, and tells what serves now."""

    def __init__(self, settings: DeploySettings, store: ArtifactStore, rollout: Rollout) -> None:
        self._settings = settings
        self._store = store
        self._rollout = rollout
        self.shared = SharedWorkers(settings, rollout)

    def serving(self, record: DeploymentRecord) -> int | None:
        """The version the pipeline's workers serve now, if any (None on another replica's)."""
        if record.shared:
            return self.shared.serving(record.pipeline)
        return self._rollout.serving(record.pipeline)

    def url(self, record: DeploymentRecord) -> str:
        """The pipeline's endpoint URL."""
        if record.shared:
            return self.shared.url(record.pipeline)
        return self._rollout.endpoint_url(record.port)

    def new_record(self, pipeline: str, *, shared: bool, taken: set[int]) -> DeploymentRecord:
        """A first record for ``pipeline``: the shared workers' port, or a free one of its own."""
        if shared:
            return DeploymentRecord(pipeline=pipeline, port=self._settings.pool_port, shared=True)
        taken = taken | {self._settings.pool_port}
        for port in self._settings.serving_ports:
            if port not in taken and can_listen(self._settings.serving_host, port):
                return DeploymentRecord(pipeline=pipeline, port=port)
        raise ServingError(f"no free endpoint port left in {self._settings.serving_ports}")

    async def ensure(self, record: DeploymentRecord) -> None:
        """Serve the record's active version where it is not served (a lost worker, a restart)."""
        current = record.current()
        if current is None or not current.realtime or self.serving(record) == current.version:
            return
        if owned_elsewhere(self._settings, self._rollout, record):
            return  # another replica's endpoint: it switches on its own watch
        if not record.shared and await self._rollout.revive(record.pipeline):
            return
        log.warning("%s version %d is not serving; starting it", record.pipeline, current.version)
        await self.serve(record, current)

    async def serve(
        self, record: DeploymentRecord, version: ApprovedVersion, *, commit: Commit | None = None
    ) -> None:
        """Serve ``version`` on the pipeline's endpoint, then ``commit`` (write the record that says so).

        When another replica owns the endpoint, ``commit`` comes first, for the owner to act on,
        and this waits until the endpoint answers with the version.
        """
        if commit is not None and owned_elsewhere(self._settings, self._rollout, record):
            await commit()
            log.info(
                "%s: waiting for the replica that owns its endpoint to serve v%d",
                record.pipeline,
                version.version,
            )
            timeout = self._settings.serving_ready_timeout_s
            await until_served_elsewhere(self.url(record), version.version, timeout_s=timeout)
            return
        tag = await asyncio.to_thread(ensure_imported, version, store=self._store)
        if record.shared:
            await self.shared.assign(
                record.pipeline, version=version.version, tag=tag, correlation_id=version.correlation_id
            )
        else:
            await self._rollout.roll_out(
                pipeline=record.pipeline,
                port=record.port,
                version=version.version,
                tag=tag,
                correlation_id=version.correlation_id,
            )
        if commit is not None:
            await commit()
