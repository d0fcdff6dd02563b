"""Events of a gradual release (deploy): a candidate judged on live traffic, then promoted or rolled back.

Every transition is its own event, keyed by pipeline like all others, so a release reads in
order: ReleaseStarted, one ReleaseStepChecked per window (for shadow, the comparison of both
versions), ReleasePaused / ReleaseResumed, and one end, ReleasePromoted or ReleaseRolledBack.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared import topics
from shared.events.envelope import Event, Frozen, Name, Text

ReleaseStrategy = Literal["shadow", "canary", "linear"]


class VersionFigures(Frozen):
    """One version's live figures over a window."""

    version: int = Field(ge=1)
    requests: int = Field(ge=0)
    errors: int = Field(ge=0, description="Requests answered with a server error (5xx).")
    error_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    feedback: int = Field(default=0, ge=0, description="Ground truth joined to its predictions.")
    accuracy: float | None = Field(default=None, description="Classification: correct / feedback.")
    mae: float | None = Field(default=None, description="Regression: mean absolute error.")


class ReleaseWindow(Frozen):
    """What one window showed of the candidate against the current version, and what it breached."""

    step: int = Field(ge=1)
    share: float = Field(ge=0, le=100, description="Percent of requests the candidate answered.")
    seconds: float = Field(ge=0)
    candidate: VersionFigures
    baseline: VersionFigures
    prediction_psi: float | None = Field(default=None, description="Candidate's predictions vs current's.")
    agreement: float | None = Field(
        default=None, description="Shadow: share of requests both versions answered alike."
    )
    shadow_skipped: int = Field(
        default=0, ge=0, description="Shadow: copies not scored because the candidate was behind."
    )
    breaches: list[Text] = Field(default_factory=list, description="Each guardrail breached, with figures.")


class ReleaseEvent(Event):
    """What every release event says: which candidate, against which version, where and how."""

    version: int = Field(ge=1, description="The candidate.")
    baseline_version: int = Field(ge=1, description="The version serving when the release began.")
    environment: Name
    strategy: ReleaseStrategy


class ReleaseStarted(ReleaseEvent):
    """A candidate entered the endpoint beside the serving version."""

    topic = topics.RELEASE_STARTED

    shares: list[float] = Field(description="The candidate's share (percent) in each window.")


class ReleaseStepChecked(ReleaseEvent):
    """A window was judged: the figures of both versions, and whether the candidate passed."""

    topic = topics.RELEASE_STEP_CHECKED

    window: ReleaseWindow
    passed: bool
    next_share: float | None = Field(default=None, description="The next window's share; None: no more.")


class ReleasePaused(ReleaseEvent):
    """An operator paused the release: the traffic split stays as it is until resumed."""

    topic = topics.RELEASE_PAUSED

    by: Name
    reason: Text = ""


class ReleaseResumed(ReleaseEvent):
    """The release goes on: after a pause, or after the deploy service started again."""

    topic = topics.RELEASE_RESUMED

    by: Name
    reason: Text = ""
    step: int = Field(ge=1, description="The window it goes on with.")


class ReleasePromoted(ReleaseEvent):
    """The candidate now serves every request."""

    topic = topics.RELEASE_PROMOTED

    by: Name = Field(description="'guardrails' when every window passed, else the operator.")
    windows_passed: int = Field(ge=0)


class ReleaseRolledBack(ReleaseEvent):
    """The candidate was taken out of the endpoint; the baseline serves every request."""

    topic = topics.RELEASE_ROLLED_BACK

    by: Name = Field(description="'guardrails' on a breach, else the operator or the deploy service.")
    reason: Text
    window: ReleaseWindow | None = Field(default=None, description="The window that breached, if any.")


RELEASE_EVENTS: tuple[type[ReleaseEvent], ...] = (
    ReleaseStarted,
    ReleaseStepChecked,
    ReleasePaused,
    ReleaseResumed,
    ReleasePromoted,
    ReleaseRolledBack,
)
