"""The deploy service's work: approved versions onto endpoints, rollbacks, and recovery after a restart."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from uuid import uuid4

from services.deploy.artifacts import ArtifactRefused, ensure_imported, import_approved
from services.deploy.records import ApprovedVersion, DeploymentRecord, DeploymentRecords
from services.deploy.rollout import Rollout
from services.deploy.settings import DeploySettings
from services.deploy.workers import ServingError, port_in_use
from shared.approvals import ApprovalNotTrusted, ApprovalVerifier
from shared.events import DeploymentFailed, Event, ModelDeployed, ServableVersion
from shared.events.serving import ServingRuntime
from shared.messaging.errors import RefusedMessage
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore

log = logging.getLogger("conveyor.deploy")

PRODUCER = "deploy"
MAX_REASON = 4000  # what an event's text field holds


def _runtime_of(version: ApprovedVersion | None) -> ServingRuntime | None:
    if version is None:
        return None
    return ServingRuntime(name=version.card.runtime.name, reason=version.card.runtime.reason[:MAX_REASON])


class NothingToRollBack(LookupError):
    """The pipeline has no earlier approved version to return to."""


@dataclass(frozen=True)
class DeploymentView:
    """What GET /v1/deployments shows of one pipeline."""

    pipeline: str
    endpoint_url: str
    active_version: int | None
    serving_version: int | None
    versions: list[int]
    previous_version: int | None


class Deployer:
    """Keeps every pipeline's endpoint serving its active approved version."""

    def __init__(
        self,
        *,
        settings: DeploySettings,
        store: ArtifactStore,
        records: DeploymentRecords,
        specs: SpecStore,
        rollout: Rollout,
    ) -> None:
        self._settings = settings
        self._store = store
        self._records = records
        self._specs = specs
        self._rollout = rollout
        self.records: dict[str, DeploymentRecord] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Only the registry approves: its signature is checked before anything is served.
        self._approvals = ApprovalVerifier(store, bucket=settings.artifacts_bucket)

    async def load(self) -> None:
        """Read the deployment records from MinIO."""
        self.records = await asyncio.to_thread(self._records.load_all)

    async def heal(self) -> None:
        """Serve every active version that is not serving: after a restart, or when a process died."""
        for pipeline in sorted(self.records):
            async with self._locks[pipeline]:
                try:
                    await self._ensure_serving(self.records[pipeline])
                except (ArtifactRefused, ServingError) as error:
                    log.error("could not serve %s again: %s", pipeline, error)

    async def watch(self, *, interval_s: float) -> None:
        """Heal as soon as a router or server exits, and every ``interval_s`` seconds, until cancelled."""
        while True:
            await self._rollout.any_exit(timeout_s=interval_s)
            await self.heal()

    async def approve(self, event: ServableVersion) -> Event | None:
        """Serve a version approved for or promoted to this environment (once), or say why it cannot be."""
        await self._trust(event)
        async with self._locks[event.pipeline]:
            record = self.records.get(event.pipeline)
            try:
                if record is not None and record.active == event.version:
                    await self._ensure_serving(record)  # a redelivery: same event id, no restart
                elif record is not None and record.superseded(event):
                    log.info("ignoring %s version %d: superseded", event.pipeline, event.version)
                    return None
                else:
                    record = await self._deploy(event, record)
            except (ArtifactRefused, ServingError) as error:
                return DeploymentFailed.caused_by(
                    event, producer=PRODUCER, version=event.version, reason=str(error)[:MAX_REASON]
                )
            return self._deployed(event, record) if event.deployment.realtime else None

    async def _trust(self, event: ServableVersion) -> None:
        """Refuse an approval the registry did not sign: DeploymentFailed, then the dead-letter topic."""
        try:
            await asyncio.to_thread(self._approvals.verify, event)
        except ApprovalNotTrusted as refused:
            log.error("refusing %s version %d: %s", event.pipeline, event.version, refused)
            reason = f"ApprovalNotTrusted: {refused}"[:MAX_REASON]
            failed = DeploymentFailed.caused_by(
                event, producer=PRODUCER, version=event.version, reason=reason
            )
            raise RefusedMessage(reason, outputs=[failed]) from None

    async def rollback(self, pipeline: str) -> ModelDeployed:
        """Serve the version approved before the active one again."""
        async with self._locks[pipeline]:
            record = self.records.get(pipeline)
            previous = record.previous() if record is not None else None
            if record is None or previous is None:
                raise NothingToRollBack(f"{pipeline} has no earlier approved version to roll back to")
            await self._serve(record, previous)
            await self._save(record.rolled_back())
            return ModelDeployed(
                event_id=uuid4(),
                correlation_id=previous.correlation_id,
                causation_id=previous.approval_event_id,
                producer=PRODUCER,
                pipeline=pipeline,
                version=previous.version,
                endpoint_url=self._rollout.endpoint_url(record.port),
                environment=self._settings.environment,
            )

    def record(self, pipeline: str) -> DeploymentRecord | None:
        """A pipeline's deployment record."""
        return self.records.get(pipeline)

    def views(self) -> list[DeploymentView]:
        """Every pipeline's deployment, for the control API."""
        return [self._view(record) for _, record in sorted(self.records.items())]

    async def stop(self) -> None:
        """Stop every process this service started (the records stay, for the next start)."""
        await self._rollout.stop_all()

    async def _deploy(self, event: ServableVersion, record: DeploymentRecord | None) -> DeploymentRecord:
        record = record or self._new_record(event.pipeline)
        approved = await asyncio.to_thread(
            import_approved, event, store=self._store, specs=self._specs, onnx=self._settings.serving_onnx
        )
        # Known before it serves: its first captures arrive while the old server drains.
        self.records[event.pipeline] = record.knowing(approved)
        if approved.realtime:
            await self._serve(record, approved)
        record = record.approved(approved, activate=approved.realtime)
        await self._save(record)
        return record

    async def _ensure_serving(self, record: DeploymentRecord) -> None:
        current = record.current()
        if (
            current is None
            or not current.realtime
            or self._rollout.serving(record.pipeline) == current.version
        ):
            return
        if await self._rollout.revive(record.pipeline):
            return
        log.warning("%s version %d is not serving; starting it", record.pipeline, current.version)
        await self._serve(record, current)

    async def _serve(self, record: DeploymentRecord, version: ApprovedVersion) -> None:
        tag = await asyncio.to_thread(ensure_imported, version, store=self._store)
        await self._rollout.roll_out(
            pipeline=record.pipeline,
            port=record.port,
            version=version.version,
            tag=tag,
            correlation_id=version.correlation_id,
        )

    async def _save(self, record: DeploymentRecord) -> None:
        await asyncio.to_thread(self._records.save, record)
        self.records[record.pipeline] = record

    def _deployed(self, event: ServableVersion, record: DeploymentRecord) -> ModelDeployed:
        return ModelDeployed.caused_by(
            event,
            producer=PRODUCER,
            version=event.version,
            endpoint_url=self._rollout.endpoint_url(record.port),
            environment=self._settings.environment,
            runtime=_runtime_of(record.versions.get(event.version)),
        )

    def _new_record(self, pipeline: str) -> DeploymentRecord:
        taken = {record.port for record in self.records.values()}
        for port in self._settings.serving_ports:
            if port not in taken and not port_in_use(self._settings.serving_host, port):
                return DeploymentRecord(pipeline=pipeline, port=port)
        raise ServingError(f"no free endpoint port left in {self._settings.serving_ports}")

    def _view(self, record: DeploymentRecord) -> DeploymentView:
        previous = record.previous()
        return DeploymentView(
            pipeline=record.pipeline,
            endpoint_url=self._rollout.endpoint_url(record.port),
            active_version=record.active,
            serving_version=self._rollout.serving(record.pipeline),
            versions=list(record.order),
            previous_version=previous.version if previous else None,
        )
