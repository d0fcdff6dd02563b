"""The registry's work: register candidates, apply approval policy and decisions, record deployments.

Every method is idempotent for a repeated input: a candidate already registered is recognised by
its run id and its decision completed if a crash interrupted it; the same outputs come back, with
the same event ids, so consumers can tell a repeat from a new fact.

More than one registry may run (replicas in one consumer group). Kafka assigns each the
partitions, and so the pipelines, it consumes; but a rebalance, a decision over HTTP at any
replica or a paused zombie can still make two of them change one group. Correctness does not
rest on who consumes what: every change is appended as the group's next journal entry with a
create-only write (``JournalStore.append``), and a replica that loses that race folds in the
winner's entries and decides again on the newer state, where a repeated candidate is recognised
by its run id. So a version number is given once, none is skipped, and no decision is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from uuid import UUID, uuid4, uuid5

from services.registry.journal import (
    Candidate,
    JournalEntry,
    VersionApproved,
    VersionDeployed,
    VersionPromoted,
    VersionRegistered,
    VersionRejected,
)
from services.registry.journal_store import JournalStore
from services.registry.model_group import ModelGroup, ModelVersion
from services.registry.release_history import release_entry
from shared.approvals import ApprovalSigner
from shared.environments import find_environment, next_environment
from shared.events import (
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelRejected,
)
from shared.events.releases import ReleaseEvent
from shared.lineage import LineageRecord
from shared.pipeline_spec import PipelineSpec
from shared.storage import ArtifactStore, ObjectExistsError

log = logging.getLogger("conveyor.registry")

PRODUCER = "registry"
AUTO_APPROVER = "policy:auto"
GATE_REJECTER = "quality-gates"
# Each lost race means another replica appended meanwhile; more losses in a row than this is a
# fault worth retrying from Kafka (with backoff), not a loop.
FENCE_ATTEMPTS = 20


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """Model groups and their versions, kept in a journal in MinIO."""

    def __init__(
        self,
        *,
        journal: JournalStore,
        store: ArtifactStore,
        spec_of: Callable[[str, str], PipelineSpec],
        clock: Callable[[], datetime] = _now,
        signer: ApprovalSigner | None = None,
        shared_journal: bool = False,
    ) -> None:
        self._journal = journal
        # Other replicas write the same journal: reads first fold in what they appended.
        self._shared_journal = shared_journal
        self._store = store
        self._spec_of = spec_of
        self._clock = clock
        # Without one (tests of the registry alone) approvals go unsigned, and no deploy service serves them.
        self._signer = signer
        self._lock = asyncio.Lock()
        # Set once the journal is loaded: a change asked for before (Kafka may deliver while the
        # journal still loads) waits, rather than numbering versions from an empty state.
        self._loaded = asyncio.Event()
        self.groups: dict[str, ModelGroup] = {}

    async def load(self) -> None:
        """Rebuild every group from the journal; changes wait until it is done."""
        self.groups = await asyncio.to_thread(self._journal.load)
        self._loaded.set()

    def group(self, pipeline: str) -> ModelGroup:
        """The group of ``pipeline`` (``LookupError`` when nothing was registered for it)."""
        try:
            return self.groups[pipeline]
        except KeyError:
            raise LookupError(f"no model group named {pipeline!r}") from None

    async def current(self, pipeline: str) -> ModelGroup:
        """The group as the journal holds it now: with other replicas, their entries folded in first."""
        if self._shared_journal:
            await self._loaded.wait()
            async with self._lock:
                await self._caught_up(pipeline)
        return self.group(pipeline)

    async def current_groups(self) -> dict[str, ModelGroup]:
        """Every group as the journal holds it now (with other replicas: groups they created too)."""
        if self._shared_journal:
            await self._loaded.wait()
            pipelines = await asyncio.to_thread(self._journal.pipelines)
            async with self._lock:
                for pipeline in sorted(set(pipelines) | set(self.groups)):
                    await self._caught_up(pipeline)
        return self.groups

    async def register(self, evaluated: ModelEvaluated) -> list[Event]:
        """Register the candidate (once) and apply its gates and approval policy."""
        await self._loaded.wait()
        spec = await asyncio.to_thread(self._spec_of, evaluated.pipeline, evaluated.spec_version)
        async with self._lock:
            group = self.groups.setdefault(evaluated.pipeline, ModelGroup(evaluated.pipeline))
            candidate = None
            if evaluated.run_id not in group.by_run_id:
                candidate = await self._candidate(evaluated)

            def new_version(group: ModelGroup) -> JournalEntry | None:
                if evaluated.run_id in group.by_run_id or candidate is None:
                    return None  # registered already (perhaps by another replica)
                return VersionRegistered(
                    at=self._clock(),
                    version=group.next_version,
                    candidate=candidate,
                    approval=spec.approval,
                    deployment=spec.deployment.target,
                    environments=spec.environments,
                )

            await self._append(group, new_version)
            number = group.by_run_id[evaluated.run_id]
            version = group.versions[number]
            await self._apply_policy(group, version)
        registered = ModelRegistered.caused_by(
            evaluated,
            producer=PRODUCER,
            version=number,
            run_id=evaluated.run_id,
            status=version.status,
        )
        return [registered, *self._decision_events(group, version, cause=evaluated)]

    async def decide(
        self, pipeline: str, number: int, *, approve: bool, by: str, comment: str
    ) -> tuple[ModelVersion, Event]:
        """A person's approval or rejection of a pending version."""
        await self._loaded.wait()
        async with self._lock:
            group = await self._caught_up(pipeline)
            entry_type = VersionApproved if approve else VersionRejected

            def decision(group: ModelGroup) -> JournalEntry:
                group.check_decision(number, approve=approve)  # decided meanwhile elsewhere: 409
                return entry_type(at=self._clock(), version=number, by=by, comment=comment)

            await self._append(group, decision)
            version = group.versions[number]
        events = self._decision_events(group, version)
        return version, events[0]

    async def promote(
        self, pipeline: str, number: int, *, to: str, by: str, comment: str
    ) -> tuple[ModelVersion, ModelPromoted]:
        """A person's decision to let a version serve in the next environment."""
        await self._loaded.wait()
        async with self._lock:
            group = await self._caught_up(pipeline)
            event_id = uuid4()

            def promotion(group: ModelGroup) -> JournalEntry:
                _, before = group.check_promotion(number, to=to)  # promoted meanwhile elsewhere: 409
                return VersionPromoted(
                    at=self._clock(),
                    version=number,
                    environment=to,
                    from_environment=before,
                    by=by,
                    comment=comment,
                    event_id=event_id,
                )

            await self._append(group, promotion)
            version = group.versions[number]
            entry = version.promotions[to]
        candidate = version.registered.candidate
        return version, self._promoted_event(group, version, entry, cause_id=candidate.evaluated_event_id)

    def environment_role(self, pipeline: str, number: int, environment: str) -> str | None:
        """The role that may promote the version to ``environment`` (None: no such version or place)."""
        version = self.group(pipeline).versions.get(number)
        found = find_environment(version.registered.environments, environment) if version else None
        return found.role if found else None

    async def record_release(self, event: ReleaseEvent) -> list[Event]:
        """Record a step of a version's gradual release in its environment (a repeat is ignored)."""
        await self._loaded.wait()
        async with self._lock:
            try:
                group = await self._caught_up(event.pipeline)
            except LookupError:
                log.warning(
                    "release of %s version %d: no such model group here", event.pipeline, event.version
                )
                return []

            def released(group: ModelGroup) -> JournalEntry | None:
                if group.released(str(event.event_id)) or event.version not in group.versions:
                    return None
                return release_entry(event)

            await self._append(group, released)
        return []

    async def record_deployment(self, deployed: ModelDeployed) -> list[Event]:
        """Remember where a version went live (a repeat of the same fact is ignored).

        When the next environment's policy is auto, the version is promoted there, once: a
        redelivered deployment publishes the same ModelPromoted again, a later one nothing.
        """
        await self._loaded.wait()
        async with self._lock:
            group = await self._caught_up(deployed.pipeline)

            def went_live(group: ModelGroup) -> JournalEntry | None:
                live = group.live(deployed.environment)
                if live is not None and live.version == deployed.version:
                    return None
                return VersionDeployed(
                    at=deployed.occurred_at,
                    version=deployed.version,
                    environment=deployed.environment,
                    endpoint_url=deployed.endpoint_url,
                    deployed_event_id=deployed.event_id,
                    runtime=deployed.runtime,
                )

            await self._append(group, went_live)
            return await self._auto_promote(group, deployed)

    async def _auto_promote(self, group: ModelGroup, deployed: ModelDeployed) -> list[Event]:
        version = group.versions.get(deployed.version)
        if version is None or deployed.environment not in version.eligible:
            return []
        following = next_environment(version.registered.environments, deployed.environment)
        if following is None or following.approval != "auto":
            return []
        number = version.number

        def auto_promotion(group: ModelGroup) -> JournalEntry | None:
            if following.name in group.versions[number].promotions:
                return None  # promoted already (by this fact at another replica, or by a person)
            return VersionPromoted(
                at=self._clock(),
                version=number,
                environment=following.name,
                from_environment=deployed.environment,
                by=AUTO_APPROVER,
                comment=f"served in {deployed.environment}",
                event_id=uuid5(deployed.event_id, "ModelPromoted"),
                cause_id=deployed.event_id,
            )

        await self._append(group, auto_promotion)
        version = group.versions[number]
        promotion = version.promotions[following.name]
        if promotion.cause_id != deployed.event_id:
            return []  # promoted before, by another fact or a person
        return [self._promoted_event(group, version, promotion, cause_id=deployed.event_id)]

    def _promoted_event(
        self, group: ModelGroup, version: ModelVersion, promotion: VersionPromoted, *, cause_id: UUID
    ) -> ModelPromoted:
        """The promotion as an event, signed as the registry signs approvals."""
        candidate = version.registered.candidate
        promoted = ModelPromoted(
            event_id=promotion.event_id,
            occurred_at=promotion.at,
            correlation_id=candidate.correlation_id,
            causation_id=cause_id,
            producer=PRODUCER,
            pipeline=group.pipeline,
            version=version.number,
            run_id=candidate.run_id,
            model=candidate.model,
            metrics=candidate.metrics,
            lineage=candidate.lineage_summary,
            deployment=version.registered.deployment,
            environment=promotion.environment,
            from_environment=promotion.from_environment,
            promoted_by=promotion.by,
            comment=promotion.comment,
        )
        return self._signer.sign(promoted) if self._signer else promoted

    async def _apply_policy(self, group: ModelGroup, version: ModelVersion) -> None:
        await self._append(group, partial(self._policy_decision, number=version.number))

    def _policy_decision(self, group: ModelGroup, *, number: int) -> JournalEntry | None:
        """What the gates and the approval policy decide for a pending version (None: nothing to do)."""
        version = group.versions[number]
        if version.status != "PendingManualApproval":
            return None
        registered = version.registered
        if not registered.candidate.passed:
            return VersionRejected(
                at=self._clock(), version=number, by=GATE_REJECTER, comment=_gate_summary(version)
            )
        if registered.approval == "auto":
            return VersionApproved(at=self._clock(), version=number, by=AUTO_APPROVER, comment="gates passed")
        return None

    async def _append(self, group: ModelGroup, decide: Callable[[ModelGroup], JournalEntry | None]) -> None:
        """Append what ``decide`` makes of the group's state, deciding again after each lost race."""
        for _ in range(FENCE_ATTEMPTS):
            entry = decide(group)
            if entry is None:
                return
            try:
                await asyncio.to_thread(self._journal.append, group, entry)
                return
            except ObjectExistsError:  # another replica appended first: fold its entries in, decide again
                await asyncio.to_thread(self._journal.catch_up, group)
        raise TimeoutError(f"{group.pipeline}: lost {FENCE_ATTEMPTS} journal races in a row")

    async def _caught_up(self, pipeline: str) -> ModelGroup:
        """The group with every journal entry folded in (LookupError if none); the caller holds the lock."""
        group = self.groups.get(pipeline) or ModelGroup(pipeline)
        await asyncio.to_thread(self._journal.catch_up, group)
        if not group.entries:
            raise LookupError(f"no model group named {pipeline!r}")
        self.groups[pipeline] = group
        return group

    def _decision_events(
        self, group: ModelGroup, version: ModelVersion, *, cause: ModelEvaluated | None = None
    ) -> list[Event]:
        """The decision as an event, in the chain of ``cause`` or else of the registered candidate.

        A later chain that reaches an already-registered run (the same data arriving again) gets
        the decision in its own chain, so whoever follows that arrival sees it complete.
        """
        if version.status == "PendingManualApproval":
            return []
        candidate = version.registered.candidate
        decision = version.audit[-1]
        cause_id = cause.event_id if cause else candidate.evaluated_event_id
        chain: dict[str, Any] = {
            "correlation_id": cause.correlation_id if cause else candidate.correlation_id,
            "causation_id": cause_id,
            "producer": PRODUCER,
            "pipeline": group.pipeline,
            "version": version.number,
            "run_id": candidate.run_id,
        }
        if version.status == "Approved":
            approved = ModelApproved(
                model=candidate.model,
                metrics=candidate.metrics,
                lineage=candidate.lineage_summary,
                deployment=version.registered.deployment,
                approved_by=decision.by,
                comment=decision.comment,
                environment=version.registered.environments[0].name,
                event_id=uuid5(cause_id, "ModelApproved"),
                **chain,
            )
            return [self._signer.sign(approved) if self._signer else approved]
        return [
            ModelRejected(
                reason=decision.comment or "rejected",
                rejected_by=decision.by,
                event_id=uuid5(cause_id, "ModelRejected"),
                **chain,
            )
        ]

    async def _candidate(self, evaluated: ModelEvaluated) -> Candidate:
        body = await asyncio.to_thread(self._store.get, evaluated.lineage)
        record = LineageRecord.model_validate_json(body)
        summary = record.summary(lineage_uri=evaluated.lineage.uri)
        return Candidate.from_event(evaluated, lineage_summary=summary)


def _gate_summary(version: ModelVersion) -> str:
    failed = [gate for gate in version.registered.candidate.gates if not gate.passed]
    if not failed:
        return "the candidate could not be evaluated"
    return "; ".join(gate.message or f"{gate.gate} failed" for gate in failed)
