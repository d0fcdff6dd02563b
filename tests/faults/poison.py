"""Poison messages for a topic, what each must be dead-lettered for, and the valid event sent after them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from services.deploy import handlers as deploy_handlers
from services.evaluate import handlers as evaluate_handlers
from services.ingest import handlers as ingest_handlers
from services.registry import handlers as registry_handlers
from services.train import handlers as train_handlers
from shared.approvals import ApprovalSigner
from shared.events import (
    BatchPredictionCompleted,
    BatchPredictionRequested,
    CapturedPrediction,
    DataArrived,
    DatasetValidated,
    DriftChecked,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelPromoted,
    ModelRegistered,
    ModelTrained,
    PredictionsCaptured,
    ReleasePaused,
    ReleasePromoted,
    ReleaseResumed,
    ReleaseRolledBack,
    ReleaseStarted,
    ReleaseStepChecked,
    ReleaseWindow,
    RetrainRequested,
    ServableVersion,
    VersionFigures,
)
from tests.faults.burst import DRIFT_WINDOW, feature_row

FIVE_MB = 5 * 1024 * 1024


@dataclass(frozen=True)
class Poison:
    """A message no consumer can process, and the reason its dead letter must give."""

    kind: str
    key: bytes
    value: bytes
    reason: str


def poisons(event: Event) -> list[Poison]:
    """Invalid JSON, wrong types, an unknown schema version, a 5 MB field and a wrong key, each unique."""
    base = event.model_dump(mode="json")

    def variant(**changes: Any) -> bytes:
        return json.dumps({**base, "event_id": str(uuid.uuid4()), **changes}).encode()

    nonce = uuid.uuid4().hex.encode()
    return [
        Poison("invalid JSON", event.key, b'{"event_id": "' + nonce + b'", "pipeline": ', "invalid_payload"),
        Poison(
            "wrong types",
            event.key,
            variant(**{k: _wrong_type(v) for k, v in base.items()}),
            "invalid_payload",
        ),
        Poison("schema_version 2", event.key, variant(schema_version=2), "invalid_payload"),
        Poison("5 MB field", event.key, variant(producer="x" * FIVE_MB), "too_large"),
        Poison("wrong key", b"not-" + event.key, variant(), "wrong_key"),
    ]


def _wrong_type(value: Any) -> Any:
    if isinstance(value, str):
        return 12345
    if isinstance(value, bool | int | float):
        return {"not": "a number"}
    if isinstance(value, list):
        return "not a list"
    return ["not", "an object"]


class _Subscriptions:
    """Stands in for a service context and records what a service subscribes to."""

    def __init__(self) -> None:
        self.consumed: list[type[Event]] = []

    def subscribe(self, event_type: type[Event], handler: object) -> None:
        self.consumed.append(event_type)

    def declare_outputs(self, *event_types: type[Event]) -> None:
        pass


def consumed_by_service() -> dict[str, list[type[Event]]]:
    """Every event type each service consumes, as its handlers subscribe (nothing is connected)."""
    registrations: dict[str, Callable[[Any], None]] = {
        "ingest": lambda ctx: ingest_handlers.register_handlers(ctx, None),  # type: ignore[arg-type]
        "train": lambda ctx: train_handlers.register_handlers(ctx, None),  # type: ignore[arg-type]
        "evaluate": lambda ctx: evaluate_handlers.register_handlers(ctx, None),  # type: ignore[arg-type]
        "registry": lambda ctx: registry_handlers.register_handlers(ctx, None),  # type: ignore[arg-type]
        "deploy": lambda ctx: deploy_handlers.register_handlers(
            ctx,
            deployer=None,
            batches=None,
            drift=None,  # type: ignore[arg-type]
            environment="production",
        ),
    }
    consumed = {}
    for service, register in registrations.items():
        recorder = _Subscriptions()
        register(recorder)
        consumed[service] = recorder.consumed
    return consumed


def fresh(event: Event, **changes: Any) -> Event:
    """``event`` as the start of a new chain: a new id and correlation, no cause."""
    update = {"event_id": uuid.uuid4(), "correlation_id": uuid.uuid4(), "causation_id": None, **changes}
    return event.model_validate({**event.model_dump(), **update})


@dataclass(frozen=True)
class FollowUp:
    """A valid event sent after the poison, and what shows it was processed.

    ``output`` is the event that follows it; with none, the registry's route ``recorded`` (its
    history of deployments, or of release steps) lists the follow-up's environment.
    """

    event: Event
    output: type[Event] | None
    recorded: str = "history"
    transition: str | None = None  # a release step's name in the registry's release history


def follow_up(
    event_type: type[Event], chain: dict[type[Event], Event], *, environment: str, signer: ApprovalSigner
) -> FollowUp:
    """The valid event of ``event_type`` for a served pipeline whose chain is ``chain``.

    ``signer`` holds the registry's key: a promotion is served only when the registry signed it.
    """
    deployed = chain[ModelDeployed]
    assert isinstance(deployed, ModelDeployed)
    validated = chain[DatasetValidated]
    assert isinstance(validated, DatasetValidated)
    arrival = chain[DataArrived]
    assert isinstance(arrival, DataArrived)
    start = {"producer": "faults", "pipeline": deployed.pipeline}
    builders: dict[type[Event], Callable[[], FollowUp]] = {
        DataArrived: lambda: FollowUp(fresh(arrival), DatasetValidated),
        RetrainRequested: lambda: FollowUp(
            RetrainRequested.first(**start, reason="after poison", dataset_uri=arrival.uri), DatasetValidated
        ),
        DatasetValidated: lambda: FollowUp(fresh(validated), ModelTrained),
        ModelTrained: lambda: FollowUp(fresh(chain[ModelTrained]), ModelEvaluated),
        ModelEvaluated: lambda: FollowUp(fresh(chain[ModelEvaluated]), ModelRegistered),
        ModelApproved: lambda: FollowUp(fresh(chain[ModelApproved]), ModelDeployed),
        # The served version promoted (again) to the environment it serves in: it answers as deployed.
        ModelPromoted: lambda: FollowUp(signer.sign(promoted(chain[ModelApproved], start)), ModelDeployed),
        # The registry answers a deployment with no event: a new environment shows in its history.
        ModelDeployed: lambda: FollowUp(fresh(deployed, environment=environment), None),
        BatchPredictionRequested: lambda: FollowUp(
            BatchPredictionRequested.first(**start, input_uri=validated.test.uri), BatchPredictionCompleted
        ),
        PredictionsCaptured: lambda: FollowUp(
            PredictionsCaptured.first(**start, version=deployed.version, predictions=_captures()),
            DriftChecked,
        ),
        # The registry answers each step of a release with no event: its release history shows it.
        **{kind: partial(_release_step, kind, start, deployed, environment) for kind in RELEASE_STEPS},
    }
    assert event_type in builders, f"no valid follow-up for {event_type.__name__}: add one to poison.py"
    return builders[event_type]()


# Each release step, the transition the registry's release history calls it, and its own fields.
RELEASE_STEPS: dict[type[Event], tuple[str, dict[str, Any]]] = {
    ReleaseStarted: ("started", {"shares": [10.0]}),
    ReleaseStepChecked: ("step_checked", {"passed": True}),
    ReleasePaused: ("paused", {"by": "faults"}),
    ReleaseResumed: ("resumed", {"by": "faults", "step": 1}),
    ReleasePromoted: ("promoted", {"by": "faults", "windows_passed": 1}),
    ReleaseRolledBack: ("rolled_back", {"by": "faults", "reason": "after poison"}),
}


def _release_step(
    kind: type[Event], start: dict[str, Any], deployed: ModelDeployed, environment: str
) -> FollowUp:
    """A step of a canary of the served version in ``environment``, which the registry journals."""
    transition, own = RELEASE_STEPS[kind]
    fields = dict(own)
    if kind is ReleaseStepChecked:
        figures = VersionFigures(version=deployed.version, requests=50, errors=0)
        window = ReleaseWindow(step=1, share=10.0, seconds=60.0, candidate=figures, baseline=figures)
        fields["window"] = window
    common = {"version": deployed.version, "baseline_version": deployed.version, "strategy": "canary"}
    event = kind.first(**start, **common, environment=environment, **fields)
    return FollowUp(event, None, recorded="releases", transition=transition)


def promoted(approved: Event, start: dict[str, Any]) -> ModelPromoted:
    """A promotion of the approved version to production, the environment the suite's deploy serves."""
    assert isinstance(approved, ModelApproved)
    servable = {
        name: getattr(approved, name)
        for name in ServableVersion.model_fields
        if name not in Event.model_fields
    }
    return ModelPromoted.first(
        **start, **servable, environment="production", from_environment="staging", promoted_by="faults"
    )


def _captures() -> list[CapturedPrediction]:
    now = datetime.now(UTC)
    row = feature_row()
    return [
        CapturedPrediction(prediction_id=uuid.uuid4().hex, captured_at=now, features=row, prediction=0)
        for _ in range(DRIFT_WINDOW)
    ]
