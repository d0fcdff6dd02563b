"""Two versions in one warm worker during a release: who answers a request, and what each did.

During a canary a share of requests goes to the candidate: a caller that names itself (the
``X-Conveyor-Caller`` header) always lands on the same side, since the choice is a digest of its
name that every worker computes alike; other requests are drawn at random. In shadow mode the
serving version answers every caller and the candidate scores a copy of the same rows after the
answer is sent, capturing its predictions under the same prediction ids. Each side's requests,
server errors, latencies, predictions and joined feedback are tallied per window; the deploy
service reads the tallies, judges them, and starts the next window.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from services.deploy.serving.feedback import same_label
from services.deploy.serving.tally import WindowTally

if TYPE_CHECKING:
    from services.deploy.serving.versions import Served

Mode = Literal["shadow", "canary"]
# Shadow scorings waiting at most: past it the candidate is behind, and a copy is skipped rather
# than queued, so a slow candidate never makes the callers' answers wait (counted as skipped).
MAX_PENDING_SHADOWS = 8


@dataclass(eq=False)
class Split:
    """The candidate beside the serving version, its share, and the current window's tallies."""

    candidate: Served
    mode: Mode
    share: float  # percent of requests the candidate answers (canary)
    baseline: WindowTally = field(default_factory=WindowTally)
    challenger: WindowTally = field(default_factory=WindowTally)
    compared: int = 0
    agreed: int = 0
    skipped: int = 0
    opened: float = field(default_factory=time.monotonic)
    _shadows: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def to_candidate(self, caller: str | None) -> bool:
        """Whether this request is the candidate's to answer."""
        if self.mode == "shadow" or self.share <= 0:
            return False
        if caller:
            digest = hashlib.sha256(caller.encode()).digest()
            return int.from_bytes(digest[:8], "big") / 2**64 * 100 < self.share
        return random.random() * 100 < self.share

    def new_window(self, share: float) -> None:
        """Route by ``share`` from now on, and tally afresh."""
        self.share = share
        self.baseline, self.challenger = WindowTally(), WindowTally()
        self.compared = self.agreed = self.skipped = 0
        self.opened = time.monotonic()

    def compare(self, served: list[Any], shadowed: list[Any]) -> None:
        """Shadow mode: how often both versions answered the same rows alike."""
        self.compared += len(served)
        self.agreed += sum(same_label(a, b) for a, b in zip(served, shadowed, strict=True))

    def in_background(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a shadow scoring after the answer has gone; skip it when the candidate is behind."""
        if len(self._shadows) >= MAX_PENDING_SHADOWS:
            self.skipped += 1
            return
        task = asyncio.get_running_loop().create_task(work())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def drain(self) -> None:
        """Wait for the shadow scorings still running."""
        if self._shadows:
            await asyncio.gather(*list(self._shadows), return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        """What a worker's status says of the release it takes part in."""
        return {"version": self.candidate.version, "mode": self.mode, "share": self.share}

    def tallies(self) -> dict[str, Any]:
        """The window so far, as the deploy service reads it."""
        return {
            **self.describe(),
            "seconds": time.monotonic() - self.opened,
            "baseline": self.baseline.to_json(),
            "candidate": self.challenger.to_json(),
            "compared": self.compared,
            "agreed": self.agreed,
            "skipped": self.skipped,
        }
