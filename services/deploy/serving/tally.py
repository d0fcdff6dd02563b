"""A release window's tallies as workers record them and the deploy service merges them.

A worker keeps, per version and per window, counts and bounded samples of latencies and
predictions; the deploy service adds the workers' windows together and computes the figures a
release is judged by (``services.deploy.guardrails``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Samples kept per version and window: enough for a p99, small enough to send over a socket.
SAMPLES_KEPT = 5000


@dataclass
class WindowTally:
    """What one version did in the current window on one worker (or, merged, on all of them)."""

    requests: int = 0
    errors: int = 0
    feedback: int = 0
    correct: int = 0
    absolute_error: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    predictions: deque[Any] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))

    def answered(self, took_ms: float, predictions: list[Any]) -> None:
        """A request it answered."""
        self.requests += 1
        self.latencies_ms.append(took_ms)
        self.predictions.extend(predictions)

    def failed(self, took_ms: float) -> None:
        """A request it failed with a server error."""
        self.requests += 1
        self.errors += 1
        self.latencies_ms.append(took_ms)

    def joined(self, *, correct: bool | None, absolute_error: float | None) -> None:
        """Ground truth joined to one of its predictions."""
        self.feedback += 1
        self.correct += int(bool(correct))
        self.absolute_error += absolute_error or 0.0

    def to_json(self) -> dict[str, Any]:
        """As a worker sends it."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "feedback": self.feedback,
            "correct": self.correct,
            "absolute_error": self.absolute_error,
            "latencies_ms": list(self.latencies_ms),
            "predictions": list(self.predictions),
        }

    @classmethod
    def merged(cls, parts: list[dict[str, Any]]) -> WindowTally:
        """The workers' tallies of one version as one."""
        total = cls(
            latencies_ms=deque(maxlen=SAMPLES_KEPT * max(1, len(parts))),
            predictions=deque(maxlen=SAMPLES_KEPT * max(1, len(parts))),
        )
        for part in parts:
            total.requests += int(part["requests"])
            total.errors += int(part["errors"])
            total.feedback += int(part["feedback"])
            total.correct += int(part["correct"])
            total.absolute_error += float(part["absolute_error"])
            total.latencies_ms.extend(float(v) for v in part["latencies_ms"])
            total.predictions.extend(part["predictions"])
        return total
