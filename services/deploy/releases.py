"""Gradual releases: a candidate judged window by window on live traffic, then promoted or rolled back.

An approved version whose spec declares ``shadow``, ``canary`` or ``linear`` joins the endpoint's
warm workers beside the serving version (``services.deploy.traffic``) instead of replacing it.
A watcher per pipeline reads the workers' tallies; once a window is complete it is judged
(``services.deploy.guardrails``): a breach rolls the candidate back at once, a pass opens the
next window, and passing the last one promotes the candidate (or waits for an operator, with
``promotion: manual``). An operator may pause, resume, promote or abort at any time.

The release is part of the pipeline's deployment record in MinIO, written before each change
is announced. The workers stop with the deploy service, so no split outlives its owner: started
again, the service serves the baseline alone, then loads the candidate beside it once more and
goes on with the window it was in, afresh; a candidate it can no longer load is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

from services.deploy.artifacts import ArtifactRefused
from services.deploy.guardrails import judge, window_ready
from services.deploy.records import ApprovedVersion, DeploymentRecord, ReleaseState
from services.deploy.traffic import TrafficSplit
from services.deploy.workers import ServingError
from shared.events import (
    Event,
    ReleasePaused,
    ReleasePromoted,
    ReleaseResumed,
    ReleaseRolledBack,
    ReleaseStarted,
    ReleaseStepChecked,
    ReleaseWindow,
    ServableVersion,
)
from shared.events.releases import ReleaseEvent
from shared.release import ReleaseSpec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from services.deploy.deployments import Deployer

log = logging.getLogger("conveyor.deploy.releases")

PRODUCER = "deploy"
BY_GUARDRAILS = "guardrails"
BY_DEPLOY = "deploy"
_POLL_S = 0.5
_WINDOWS_KEPT = 50
Action = Literal["pause", "resume", "promote", "abort"]


class NoRelease(LookupError):
    """The pipeline has no release in progress."""


class ReleaseRefused(ValueError):
    """The action does not apply to the release as it stands (resume a running one, pause a paused one)."""


class Releases:
    """Every pipeline's release in progress, and the watchers that judge them."""

    def __init__(
        self, *, deployer: Deployer, traffic: TrafficSplit, publish: Callable[[Event], Awaitable[None]]
    ) -> None:
        self._deployer = deployer
        self._traffic = traffic
        self._publish = publish
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def start(
        self, event: ServableVersion, record: DeploymentRecord, candidate: ApprovedVersion, spec: ReleaseSpec
    ) -> list[Event]:
        """Put ``candidate`` beside the serving version and begin judging it (the pipeline's lock is held)."""
        baseline = record.current()
        assert baseline is not None and spec.strategy != "all_at_once"
        tag = await self._deployer.tag_of(candidate)
        shares = spec.shares()
        await self._traffic.open(
            record.pipeline,
            version=candidate.version,
            tag=tag,
            correlation_id=candidate.correlation_id,
            mode=_mode(spec),
            share=shares[0],
        )
        state = ReleaseState(
            version=candidate.version,
            baseline=baseline.version,
            strategy=spec.strategy,
            spec=spec,
            approval_event_id=candidate.approval_event_id,
        )
        await self._deployer.save(record.knowing(candidate).releasing(state))
        self._watch(record.pipeline)
        log.info("%s: v%d beside v%d (%s)", record.pipeline, state.version, state.baseline, spec.strategy)
        return [
            ReleaseStarted.caused_by(
                event,
                producer=PRODUCER,
                version=candidate.version,
                baseline_version=baseline.version,
                environment=self._deployer.environment,
                strategy=state.strategy,
                shares=shares,
            )
        ]

    async def supersede(self, record: DeploymentRecord, *, by_version: int) -> list[Event]:
        """Roll the running candidate back because a newer version was approved (the lock is held)."""
        return await self._roll_back(
            record, by=BY_DEPLOY, reason=f"superseded by version {by_version}", window=None
        )

    async def act(self, pipeline: str, action: Action, *, by: str, reason: str = "") -> list[Event]:
        """An operator's pause, resume, promote or abort; the events it caused."""
        async with self._deployer.lock(pipeline):
            record = self._deployer.record(pipeline)
            state = record.release if record is not None else None
            if record is None or state is None:
                raise NoRelease(f"{pipeline} has no release in progress")
            if action == "pause":
                if state.status != "running":
                    raise ReleaseRefused(f"the release of {pipeline} v{state.version} is {state.status}")
                await self._deployer.save(record.releasing(state.model_copy(update={"status": "paused"})))
                return [self._event(ReleasePaused, record, state, by=by, reason=reason)]
            if action == "resume":
                if state.status != "paused":
                    raise ReleaseRefused(f"the release of {pipeline} v{state.version} is {state.status}")
                await self._traffic.reshape(pipeline, share=state.share)  # the window starts afresh
                await self._deployer.save(record.releasing(state.model_copy(update={"status": "running"})))
                return [self._event(ReleaseResumed, record, state, by=by, reason=reason, step=state.step)]
            if action == "promote":
                return await self._promote(record, by=by)
            reason = reason or "aborted by an operator"
            return await self._roll_back(record, by=by, reason=reason, window=None)

    async def resume_all(self) -> None:
        """After a start: load every recorded release's candidate beside its baseline again, and go on."""
        for pipeline in sorted(self._deployer.records):
            async with self._deployer.lock(pipeline):
                record = self._deployer.record(pipeline)
                events = await self._reopen(record) if record is not None and record.release else []
            for event in events:
                await self._publish(event)

    async def stop(self) -> None:
        """Stop judging (the records keep each release for the next start)."""
        for watcher in self._watchers.values():
            watcher.cancel()
        for watcher in list(self._watchers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._watchers.clear()

    async def _reopen(self, record: DeploymentRecord) -> list[Event]:
        state = record.release
        assert state is not None
        candidate = record.versions[state.version]
        try:
            tag = await self._deployer.tag_of(candidate)
            await self._traffic.open(
                record.pipeline,
                version=state.version,
                tag=tag,
                correlation_id=candidate.correlation_id,
                mode=_mode(state.spec),
                share=state.share,
            )
        except (ArtifactRefused, ServingError) as error:
            reason = f"the deploy service started again and could not load the candidate: {error}"
            return await self._roll_back(record, by=BY_DEPLOY, reason=reason, window=None)
        self._watch(record.pipeline)
        reason = f"the deploy service started again; window {state.step} starts afresh"
        return [self._event(ReleaseResumed, record, state, by=BY_DEPLOY, reason=reason, step=state.step)]

    def _watch(self, pipeline: str) -> None:
        running = self._watchers.get(pipeline)
        if running is None or running.done():
            self._watchers[pipeline] = asyncio.create_task(self._judge_windows(pipeline))

    async def _judge_windows(self, pipeline: str) -> None:
        """Judge each window of the pipeline's release once it is complete, until the release ends."""
        while True:
            await asyncio.sleep(_POLL_S)
            try:
                async with self._deployer.lock(pipeline):
                    record = self._deployer.record(pipeline)
                    if record is None or record.release is None:
                        return
                    events = await self._judge(record, record.release)
                for event in events:
                    await self._publish(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # a window is judged again on the next poll; the release keeps its state
                log.exception("%s: the release window could not be judged", pipeline)

    async def _judge(self, record: DeploymentRecord, state: ReleaseState) -> list[Event]:
        if state.status != "running":
            return []
        try:
            tallies = await self._traffic.tallies(record.pipeline)
        except ServingError:
            return []  # the endpoint is being healed
        if not window_ready(tallies, state.spec):
            return []
        shares = state.spec.shares()
        window = judge(
            tallies,
            spec=state.spec,
            step=state.step,
            share=state.share,
            candidate=state.version,
            baseline=state.baseline,
            task=record.versions[state.version].card.task,
        )
        state = state.model_copy(update={"windows": [*state.windows, window][-_WINDOWS_KEPT:]})
        record = record.releasing(state)
        last = state.step >= len(shares)
        next_share = None if window.breaches or last else shares[state.step]
        passed = not window.breaches
        checked = self._event(
            ReleaseStepChecked, record, state, window=window, passed=passed, next_share=next_share
        )
        log.info("%s: window %d of version %d: %s", record.pipeline, state.step, state.version, window)
        if window.breaches:
            reason = "; ".join(window.breaches)
            return [checked, *await self._roll_back(record, by=BY_GUARDRAILS, reason=reason, window=window)]
        if next_share is not None:
            await self._traffic.reshape(record.pipeline, share=next_share)
            await self._deployer.save(record.releasing(state.model_copy(update={"step": state.step + 1})))
            return [checked]
        if state.spec.promotion == "auto":
            return [checked, *await self._promote(record, by=BY_GUARDRAILS)]
        await self._deployer.save(record.releasing(state.model_copy(update={"status": "awaiting_promotion"})))
        return [checked]

    async def _promote(self, record: DeploymentRecord, *, by: str) -> list[Event]:
        state = record.release
        assert state is not None
        candidate = record.versions[state.version]
        tag = await self._deployer.tag_of(candidate)
        await self._traffic.promote(
            record.pipeline, version=candidate.version, tag=tag, correlation_id=candidate.correlation_id
        )
        promoted = record.releasing(None).approved(candidate, activate=True)
        await self._deployer.save(promoted)
        log.info("%s: version %d promoted by %s", record.pipeline, state.version, by)
        return [
            self._event(ReleasePromoted, record, state, by=by, windows_passed=len(state.windows)),
            self._deployer.deployed(promoted, candidate),
        ]

    async def _roll_back(
        self, record: DeploymentRecord, *, by: str, reason: str, window: ReleaseWindow | None
    ) -> list[Event]:
        state = record.release
        assert state is not None
        await self._traffic.close(record.pipeline)
        await self._deployer.save(record.released_back())
        log.warning("%s: version %d rolled back by %s: %s", record.pipeline, state.version, by, reason)
        return [self._event(ReleaseRolledBack, record, state, by=by, reason=reason[:4000], window=window)]

    def _event(
        self, kind: type[ReleaseEvent], record: DeploymentRecord, state: ReleaseState, **fields: Any
    ) -> Event:
        candidate = record.versions[state.version]
        return kind(
            event_id=uuid4(),
            correlation_id=candidate.correlation_id,
            causation_id=candidate.approval_event_id,
            producer=PRODUCER,
            pipeline=record.pipeline,
            version=state.version,
            baseline_version=state.baseline,
            environment=self._deployer.environment,
            strategy=state.strategy,
            **fields,
        )


def _mode(spec: ReleaseSpec) -> str:
    return "shadow" if spec.strategy == "shadow" else "canary"
