"""What the console knows from Kafka: every arrival's chain and each pipeline at a glance.

Folded in memory from the topics read from their beginning at every start, so the console keeps
nothing it cannot rebuild; an event seen twice (at-least-once delivery) changes nothing, because
each step keeps the first event that reached it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from shared.events import (
    DataArrived,
    DatasetRejected,
    DatasetValidated,
    DeploymentFailed,
    DriftChecked,
    DriftDetected,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelRejected,
    ModelTrained,
    PredictionsCaptured,
    RetrainRequested,
    TrainingFailed,
)

# How many drift checks and monitoring events each pipeline's charts keep.
HISTORY = 500


@dataclass(frozen=True)
class Step:
    """One stage of an arrival's chain: the event that completes it and those that end it."""

    name: str
    done_by: type[Event]
    failed_by: tuple[type[Event], ...] = ()


STEPS: tuple[Step, ...] = (
    Step("arrived", DataArrived),
    Step("validated", DatasetValidated, (DatasetRejected,)),
    Step("trained", ModelTrained, (TrainingFailed,)),
    Step("evaluated", ModelEvaluated),
    Step("registered", ModelRegistered),
    Step("approved", ModelApproved, (ModelRejected,)),
    Step("deployed", ModelDeployed, (DeploymentFailed,)),
    Step("first prediction", PredictionsCaptured),
)
_STEP_OF: dict[type[Event], tuple[Step, bool]] = {
    kind: (step, kind is step.done_by) for step in STEPS for kind in (step.done_by, *step.failed_by)
}


@dataclass(frozen=True)
class Reached:
    """The event that completed (or ended) a step."""

    step: str
    event: Event
    ok: bool


@dataclass
class Arrival:
    """One data arrival's chain, by correlation id."""

    correlation_id: UUID
    pipeline: str
    trace_id: str | None = None
    steps: dict[str, Reached] = field(default_factory=dict)

    @property
    def started_at(self) -> datetime | None:
        """When the first event of the chain occurred."""
        return min((r.event.occurred_at for r in self.steps.values()), default=None)

    @property
    def outcome(self) -> str:
        """The furthest step reached, or the one that failed."""
        failed = [r for r in self.steps.values() if not r.ok]
        if failed:
            return f"{type(failed[0].event).__name__}"
        last = [s.name for s in STEPS if s.name in self.steps]
        return last[-1] if last else "pending"

    @property
    def failed(self) -> bool:
        """Whether a step of the chain failed."""
        return any(not r.ok for r in self.steps.values())

    def event_of(self, kind: type[Event]) -> Event | None:
        """The chain's event of ``kind``, if it has one."""
        return next((r.event for r in self.steps.values() if isinstance(r.event, kind)), None)


@dataclass(frozen=True)
class DriftPoint:
    """One drift check of a pipeline's live features."""

    at: datetime
    version: int
    psi: dict[str, float]
    threshold: float


@dataclass
class Pipeline:
    """A pipeline at a glance."""

    name: str
    spec_version: str | None = None
    last_arrival: UUID | None = None
    champion_version: int | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    endpoint_url: str | None = None
    live_version: int | None = None
    drift: deque[DriftPoint] = field(default_factory=lambda: deque(maxlen=HISTORY))
    monitoring: deque[Event] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def drift_status(self) -> str:
        """ "drifted", "stable", or "unchecked" from the latest drift check."""
        if not self.drift:
            return "unchecked"
        latest = self.drift[-1]
        return "drifted" if max(latest.psi.values(), default=0.0) > latest.threshold else "stable"

    @property
    def primary_metric(self) -> tuple[str, float] | None:
        """The champion's headline figure (the first of its metrics, as evaluate orders them)."""
        return next(iter(self.champion_metrics.items()), None)


class Timeline:
    """Every arrival and pipeline the console has read from Kafka."""

    def __init__(self) -> None:
        self.arrivals: dict[UUID, Arrival] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.evaluations: dict[tuple[str, str], ModelEvaluated] = {}
        self.validations: dict[tuple[str, str], DatasetValidated] = {}
        self.version_chain: dict[tuple[str, int], UUID] = {}
        self.latest_versions: dict[str, int] = {}
        # Counts the events folded in: a view rendered at one revision stays right until the next.
        self.revision = 0

    def add(self, event: Event, *, trace_id: str | None = None) -> set[str]:
        """Fold one event in; returns the keys of what changed (a correlation id, a pipeline)."""
        self.revision += 1
        pipeline = self.pipelines.setdefault(event.pipeline, Pipeline(event.pipeline))
        self._record_step(event, pipeline=pipeline, trace_id=trace_id)
        self._record_pipeline(event, pipeline)
        return {str(event.correlation_id), event.pipeline}

    def latest_version(self, pipeline: str) -> int | None:
        """The highest version the registry announced for ``pipeline``, if any was read."""
        return self.latest_versions.get(pipeline)

    def arrivals_of(self, pipeline: str, *, limit: int = 50) -> list[Arrival]:
        """A pipeline's latest arrivals, newest first."""
        found = [a for a in self.arrivals.values() if a.pipeline == pipeline and "arrived" in a.steps]
        return sorted(found, key=lambda a: a.started_at or datetime.min, reverse=True)[:limit]

    def _record_step(self, event: Event, *, pipeline: Pipeline, trace_id: str | None) -> None:
        located = _STEP_OF.get(type(event))
        if located is None:
            return
        step, ok = located
        arrival = self.arrivals.get(event.correlation_id)
        if arrival is None:  # a new chain: the pipeline's latest (a chain may be read from its middle)
            arrival = self.arrivals[event.correlation_id] = Arrival(event.correlation_id, event.pipeline)
            pipeline.last_arrival = event.correlation_id
        if isinstance(event, DataArrived):
            arrival.trace_id = arrival.trace_id or trace_id
        # The first success keeps a step: a redelivery or a later rollback does not move it. A success
        # after a failure (a retry that worked) replaces the failure; a failure never hides a success.
        reached = arrival.steps.get(step.name)
        if reached is None or (ok and not reached.ok):
            arrival.steps[step.name] = Reached(step.name, event, ok)

    def _record_pipeline(self, event: Event, pipeline: Pipeline) -> None:
        if isinstance(event, DatasetValidated):
            pipeline.spec_version = event.spec_version
            self.validations[(event.pipeline, event.dataset_version)] = event
        elif isinstance(event, ModelEvaluated):
            self.evaluations[(event.pipeline, event.run_id)] = event
        elif isinstance(event, ModelRegistered):
            self.version_chain[(event.pipeline, event.version)] = event.correlation_id
            self.latest_versions[event.pipeline] = max(
                event.version, self.latest_versions.get(event.pipeline, 0)
            )
        elif isinstance(event, ModelApproved):
            pipeline.champion_version = event.version
            pipeline.champion_metrics = dict(event.metrics)
        elif isinstance(event, ModelDeployed):
            pipeline.endpoint_url = event.endpoint_url
            pipeline.live_version = event.version
        elif isinstance(event, DriftChecked):
            pipeline.drift.append(
                DriftPoint(event.occurred_at, event.version, dict(event.psi), event.threshold)
            )
        elif isinstance(event, DriftDetected | RetrainRequested):
            pipeline.monitoring.append(event)
