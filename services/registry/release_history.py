"""The deploy service's release events as the registry's journal records them, per environment.

Every transition of a gradual release (started, each judged window, paused, resumed, promoted,
rolled back) becomes one journal entry of the version, so the history answers what happened to a
version in each environment, and by whom, long after the deploy service moved on.
"""

from __future__ import annotations

from services.registry.journal import ReleaseTransition, VersionReleased
from shared.events import (
    ReleasePaused,
    ReleasePromoted,
    ReleaseResumed,
    ReleaseRolledBack,
    ReleaseStarted,
    ReleaseStepChecked,
)
from shared.events.releases import ReleaseEvent


def release_entry(event: ReleaseEvent) -> VersionReleased:
    """The journal entry of one release event."""
    transition, by, detail = _told(event)
    return VersionReleased(
        at=event.occurred_at,
        version=event.version,
        environment=event.environment,
        transition=transition,
        baseline_version=event.baseline_version,
        strategy=event.strategy,
        by=by,
        detail=detail[:4000],
        event_id=event.event_id,
    )


def _told(event: ReleaseEvent) -> tuple[ReleaseTransition, str, str]:
    if isinstance(event, ReleaseStarted):
        shares = ", ".join(f"{share:g}%" for share in event.shares)
        return (
            "started",
            event.producer,
            f"{event.strategy} beside version {event.baseline_version}: {shares}",
        )
    if isinstance(event, ReleaseStepChecked):
        window = event.window
        verdict = "passed" if event.passed else "; ".join(window.breaches)
        return "step_checked", "guardrails", f"window {window.step} at {window.share:g}%: {verdict}"
    if isinstance(event, ReleasePaused):
        return "paused", event.by, event.reason
    if isinstance(event, ReleaseResumed):
        return "resumed", event.by, event.reason or f"window {event.step}"
    if isinstance(event, ReleasePromoted):
        return "promoted", event.by, f"after {event.windows_passed} window(s)"
    if isinstance(event, ReleaseRolledBack):
        return "rolled_back", event.by, event.reason
    raise TypeError(f"not a release event: {type(event).__name__}")
