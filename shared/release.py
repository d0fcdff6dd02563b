"""How a new version replaces the serving one: at once, in the shadow of it, or by a growing share.

A spec's ``deployment.release`` section declares it. ``all_at_once`` (the default) switches every
request at once. The other strategies keep both versions in the endpoint's warm workers and
judge the candidate on live evidence, window by window, against the version it would replace:

- ``shadow``: the candidate scores a copy of every request; callers only get the current
  version's answers. ``steps`` windows are compared, then the candidate is promoted (or waits
  for an operator, with ``promotion: manual``).
- ``canary``: ``percent`` of requests go to the candidate for ``steps`` windows, then all.
- ``linear``: the share grows by ``percent`` each window (10, 20, … 90), then all.

A window ends once ``interval_seconds`` have passed and the candidate has answered at least
``min_requests``; any breach of the guardrails rolls the candidate back at once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.events.envelope import Frozen

Strategy = Literal["all_at_once", "shadow", "canary", "linear"]

# A caller that names itself in this header always reaches the same version during a canary.
STICKY_HEADER = "X-Conveyor-Caller"


class Guardrails(Frozen):
    """What a candidate may not do worse than the current version over the same window."""

    max_error_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="Server errors (5xx) per request, above the current version's."
    )
    max_p99_ratio: float = Field(default=2.0, ge=1, description="Its latency p99 over the current one's.")
    min_p99_excess_ms: float = Field(
        default=25.0, ge=0, description="A slower p99 is a breach only when also this many ms slower."
    )
    max_accuracy_drop: float = Field(
        default=0.05, ge=0, le=1, description="Live accuracy from feedback (classification), absolute."
    )
    max_mae_ratio: float = Field(default=1.25, ge=1, description="Live MAE from feedback (regression).")
    min_feedback: int = Field(
        default=20, ge=1, description="Feedback joins per version in a window before accuracy is judged."
    )
    max_prediction_psi: float = Field(
        default=0.25, gt=0, description="PSI of its predictions against the current version's."
    )


class ReleaseSpec(Frozen):
    """The release strategy of a new version, and the guardrails it is judged by."""

    strategy: Strategy = "all_at_once"
    percent: float = Field(default=10.0, gt=0, lt=100, description="canary: its share; linear: each step.")
    steps: int = Field(default=3, ge=1, le=100, description="Windows judged (shadow, canary).")
    interval_seconds: float = Field(default=60.0, gt=0, le=86_400)
    min_requests: int = Field(default=50, ge=1, description="Candidate requests a window needs.")
    promotion: Literal["auto", "manual"] = Field(
        default="auto", description="After the last window: promote at once, or wait for an operator."
    )
    guardrails: Guardrails = Guardrails()

    @model_validator(mode="after")
    def _linear_fits(self) -> ReleaseSpec:
        if self.strategy == "linear" and self.percent > 50:
            raise ValueError("a linear release grows by at most 50 percent a step (use canary)")
        return self

    @property
    def gradual(self) -> bool:
        """Whether the candidate is judged on live traffic before it serves everyone."""
        return self.strategy != "all_at_once"

    def shares(self) -> list[float]:
        """The candidate's share of requests in each window (0 for shadow: it answers nobody)."""
        if self.strategy == "shadow":
            return [0.0] * self.steps
        if self.strategy == "canary":
            return [self.percent] * self.steps
        if self.strategy == "linear":
            count = int((100 - 1e-9) // self.percent)
            return [round(self.percent * (step + 1), 6) for step in range(count)]
        return []
