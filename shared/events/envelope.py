"""The envelope every event carries, and the value types events share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self
from uuid import UUID, uuid4, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Used as Kafka key, object-store prefix and BentoML name, so it is kept to a safe alphabet.
PipelineName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", max_length=63)]
# Names a deploy service's CONVEYOR_ENVIRONMENT; used as an object-store segment and in group ids.
EnvironmentName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", max_length=63)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(max_length=4000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Frozen(BaseModel):
    """An immutable value that refuses unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Frozen):
    """A past-tense fact published on Kafka, keyed by its pipeline so one model's events stay ordered."""

    topic: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    schema_version: Literal[1] = 1
    correlation_id: UUID = Field(description="One per data arrival, carried through the whole chain.")
    causation_id: UUID | None = Field(default=None, description="The event that caused this one.")
    producer: Name = Field(description="The service (or client) that published the event.")
    pipeline: PipelineName

    @property
    def key(self) -> bytes:
        """The Kafka message key."""
        return self.pipeline.encode()

    @classmethod
    def first(cls, *, producer: str, pipeline: str, **fields: Any) -> Self:
        """An event that starts a new chain (a new correlation id)."""
        return cls(correlation_id=uuid4(), producer=producer, pipeline=pipeline, **fields)

    @classmethod
    def caused_by(cls, cause: Event, *, producer: str, **fields: Any) -> Self:
        """An event that follows ``cause`` in its chain.

        The id is derived from the cause, so a redelivered cause yields the very same event id
        and consumers can recognise the repeat.
        """
        fields.setdefault("pipeline", cause.pipeline)
        return cls(
            event_id=uuid5(cause.event_id, cls.__name__),
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            producer=producer,
            **fields,
        )


class ArtifactRef(Frozen):
    """An immutable object in the store, with the digest recorded when it was written."""

    uri: Uri
    sha256: Sha256
    size_bytes: int = Field(ge=0)


class RuleResult(Frozen):
    """One named data-validation rule, with the figure it measured."""

    rule: Name
    passed: bool
    severity: Literal["error", "warning"] = "error"
    figure: float | None = None
    threshold: float | None = None
    column: Name | None = None
    message: Text = ""


class GateResult(Frozen):
    """One quality gate applied to a candidate model."""

    gate: Name
    metric: Name
    passed: bool
    value: float | None
    threshold: float
    message: Text = ""


class ChampionComparison(Frozen):
    """The approved version scored on the challenger's test set."""

    champion_version: int = Field(ge=1)
    champion_metrics: dict[Name, float]


class DeploymentTarget(Frozen):
    """How an approved model should be served."""

    realtime: bool = True
    batch: bool = False


class LineageSummary(Frozen):
    """Where a model version came from; the full record is the lineage artifact."""

    run_id: Name
    dataset_version: Sha256
    spec_version: Name
    code_version: Name
    hyperparameters: dict[Name, Any] = Field(default_factory=dict)
    framework: Name = "scikit-learn"
    framework_version: Name
    training_image: Name | None = None
    lineage_uri: Uri
