"""The deploy service's work: approved versions onto endpoints, rollbacks, and recovery after a restart."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from uuid import uuid4

from services.deploy.artifacts import ArtifactRefused, ensure_imported, import_approved
from services.deploy.endpoints import Endpoints
from services.deploy.records import ApprovedVersion, DeploymentRecord, DeploymentRecords, ReleaseState
from services.deploy.releases import Releases
from services.deploy.rollout import Rollout
from services.deploy.settings import DeploySettings
from services.deploy.traffic import TrafficSplit
from services.deploy.workers import ServingError
from shared.approvals import ApprovalNotTrusted, ApprovalVerifier
from shared.events import DeploymentFailed, Event, ModelDeployed, ServableVersion
from shared.events.serving import ServingRuntime
from shared.messaging.errors import RefusedMessage
from shared.pipeline_spec import PipelineSpec
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
    release: ReleaseState | None


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
        publish: Callable[[Event], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self.environment = settings.environment
        self._store = store
        self._records = records
        self._specs = specs
        self._rollout = rollout
        self.records: dict[str, DeploymentRecord] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Only the registry approves: its signature is checked before anything is served.
        self._approvals = ApprovalVerifier(store, bucket=settings.artifacts_bucket)
        self.releases = Releases(deployer=self, traffic=TrafficSplit(rollout), publish=publish)
        self._endpoints = Endpoints(settings, store, rollout)
        self.shared = self._endpoints.shared

    async def load(self) -> None:
        """Read the deployment records from MinIO."""
        self.records = await asyncio.to_thread(self._records.load_all)

    async def heal(self) -> None:
        """Serve every active version that is not serving: after a restart, or when a process died.

        With replicas, the records are read again first: another replica may have changed them.
        """
        if self._settings.deploy_replicas > 1:
            for pipeline, record in (await asyncio.to_thread(self._records.load_all)).items():
                async with self._locks[pipeline]:
                    self.records[pipeline] = record
        for pipeline in sorted(self.records):
            async with self._locks[pipeline]:
                try:
                    await self._endpoints.ensure(self.records[pipeline])
                except (ArtifactRefused, ServingError) as error:
                    log.error("could not serve %s again: %s", pipeline, error)

    async def watch(self, *, interval_s: float) -> None:
        """Heal as soon as a router or server exits, and every ``interval_s`` seconds, until cancelled."""
        while True:
            await self._rollout.any_exit(timeout_s=interval_s)
            await self.heal()

    async def approve(self, event: ServableVersion) -> list[Event]:
        """Serve a version approved for or promoted to this environment (once), or say why it cannot be.

        Where the spec declares a gradual release and a version already serves, the new one is
        released beside it (``services.deploy.releases``) instead of replacing it at once.
        """
        await self._trust(event)
        async with self._locks[event.pipeline]:
            record = self.records.get(event.pipeline)
            events: list[Event] = []
            try:
                if record is not None and record.active == event.version:
                    await self._endpoints.ensure(record)  # a redelivery: same event id, no restart
                elif record is not None and (record.superseded(event) or _in_release(record, event)):
                    log.info("ignoring %s version %d: superseded or released", event.pipeline, event.version)
                    return []
                else:
                    if record is not None and record.release is not None:
                        events += await self.releases.supersede(record, by_version=event.version)
                        record = self.records[event.pipeline]
                    deployment = (await self._spec_of(event)).deployment
                    release = deployment.release
                    if release.gradual and self._serves_realtime(record) and event.deployment.realtime:
                        assert record is not None
                        if record.shared:  # the shared workers hold one version per pipeline
                            log.warning("%s: shared workers release all at once", record.pipeline)
                        else:
                            candidate = await self._import(event)
                            return events + await self.releases.start(event, record, candidate, release)
                    shared = deployment.workers == "shared" or (
                        deployment.workers == "default" and self._settings.serving_pool
                    )
                    record = await self._deploy(event, record or self._new_record(event.pipeline, shared))
            except (ArtifactRefused, ServingError) as error:
                failed = DeploymentFailed.caused_by(
                    event, producer=PRODUCER, version=event.version, reason=str(error)[:MAX_REASON]
                )
                return [*events, failed]
            if not event.deployment.realtime:
                return events
            return [*events, self._deployed_by(event, record)]

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
            if record is not None and record.release is not None:
                raise NothingToRollBack(
                    f"{pipeline} version {record.release.version} is being released: abort the release"
                )
            if record is None or previous is None:
                raise NothingToRollBack(f"{pipeline} has no earlier approved version to roll back to")
            await self._endpoints.serve(record, previous, commit=partial(self.save, record.rolled_back()))
            return self.deployed(record, previous)

    def record(self, pipeline: str) -> DeploymentRecord | None:
        """A pipeline's deployment record."""
        return self.records.get(pipeline)

    def views(self) -> list[DeploymentView]:
        """Every pipeline's deployment, for the control API."""
        return [self._view(record) for _, record in sorted(self.records.items())]

    async def stop(self) -> None:
        """Stop every process this service started (the records stay, for the next start)."""
        await self.releases.stop()
        await self._rollout.stop_all()

    def lock(self, pipeline: str) -> asyncio.Lock:
        """The lock every change of a pipeline's deployment takes."""
        return self._locks[pipeline]

    async def save(self, record: DeploymentRecord) -> None:
        """Write a pipeline's record to MinIO, then keep it as the current one."""
        await asyncio.to_thread(self._records.save, record)
        self.records[record.pipeline] = record

    async def tag_of(self, version: ApprovedVersion) -> str:
        """The version's tag in the BentoML store (imported again when the store lost it)."""
        return await asyncio.to_thread(ensure_imported, version, store=self._store)

    def deployed(self, record: DeploymentRecord, version: ApprovedVersion) -> ModelDeployed:
        """The ModelDeployed of a version that now serves every request of the pipeline."""
        return ModelDeployed(
            event_id=uuid4(),
            correlation_id=version.correlation_id,
            causation_id=version.approval_event_id,
            producer=PRODUCER,
            pipeline=record.pipeline,
            version=version.version,
            endpoint_url=self._endpoints.url(record),
            environment=self._settings.environment,
            runtime=_runtime_of(version),
        )

    async def _import(self, event: ServableVersion) -> ApprovedVersion:
        return await asyncio.to_thread(
            import_approved, event, store=self._store, specs=self._specs, onnx=self._settings.serving_onnx
        )

    async def _spec_of(self, event: ServableVersion) -> PipelineSpec:
        return await asyncio.to_thread(self._specs.get, event.pipeline, event.lineage.spec_version)

    def _serves_realtime(self, record: DeploymentRecord | None) -> bool:
        current = record.current() if record is not None else None
        if record is None or current is None or not current.realtime:
            return False
        return self._endpoints.serving(record) == current.version

    async def _deploy(self, event: ServableVersion, record: DeploymentRecord) -> DeploymentRecord:
        approved = await self._import(event)
        # Known before it serves: its first captures arrive while the old server drains.
        self.records[event.pipeline] = record.knowing(approved)
        updated = record.approved(approved, activate=approved.realtime)
        if approved.realtime:
            await self._endpoints.serve(record, approved, commit=partial(self.save, updated))
        else:
            await self.save(updated)
        return updated

    def _deployed_by(self, event: ServableVersion, record: DeploymentRecord) -> ModelDeployed:
        return ModelDeployed.caused_by(
            event,
            producer=PRODUCER,
            version=event.version,
            endpoint_url=self._endpoints.url(record),
            environment=self._settings.environment,
            runtime=_runtime_of(record.versions.get(event.version)),
        )

    def _new_record(self, pipeline: str, shared: bool) -> DeploymentRecord:
        taken = {record.port for record in self.records.values()}
        return self._endpoints.new_record(pipeline, shared=shared, taken=taken)

    def _view(self, record: DeploymentRecord) -> DeploymentView:
        previous = record.previous()
        return DeploymentView(
            pipeline=record.pipeline,
            endpoint_url=self._endpoints.url(record),
            active_version=record.active,
            serving_version=self._endpoints.serving(record),
            versions=list(record.order),
            previous_version=previous.version if previous else None,
            release=record.release,
        )


def _in_release(record: DeploymentRecord, event: ServableVersion) -> bool:
    """Whether ``event`` names the candidate already being released (a redelivery)."""
    return record.release is not None and record.release.version == event.version
