"""Judging a release window: the workers' tallies merged into each version's figures, and the breaches.

Both versions are measured over the same window on the same workers, so a slow machine slows
both alike: every guardrail compares the candidate with the version it would replace, never
with a fixed figure. Latency and accuracy need samples to mean anything: a p99 is judged only
past a floor of excess milliseconds, accuracy only once both versions have feedback enough.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from services.deploy.serving.tally import WindowTally
from shared.events.releases import ReleaseWindow, VersionFigures
from shared.release import Guardrails, ReleaseSpec

# Predictions per version below which their distributions are not compared.
MIN_PSI_SAMPLES = 50
_PSI_FLOOR = 1e-4
_BINS = 10


def window_ready(tallies: Sequence[dict[str, Any]], spec: ReleaseSpec) -> bool:
    """Whether the window has run its interval and the candidate has answered enough requests."""
    if not tallies:
        return False
    seconds = min(float(t["seconds"]) for t in tallies)
    answered = sum(int(t["candidate"]["requests"]) for t in tallies)
    return seconds >= spec.interval_seconds and answered >= spec.min_requests


def judge(
    tallies: Sequence[dict[str, Any]],
    *,
    spec: ReleaseSpec,
    step: int,
    share: float,
    candidate: int,
    baseline: int,
    task: str,
) -> ReleaseWindow:
    """The window's figures for both versions and every guardrail the candidate breached."""
    mine = WindowTally.merged([t["candidate"] for t in tallies])
    theirs = WindowTally.merged([t["baseline"] for t in tallies])
    ours, current = figures(candidate, mine, task), figures(baseline, theirs, task)
    psi = prediction_psi(list(theirs.predictions), list(mine.predictions), task=task)
    compared = sum(int(t["compared"]) for t in tallies)
    agreed = sum(int(t["agreed"]) for t in tallies)
    return ReleaseWindow(
        step=step,
        share=share,
        seconds=round(min((float(t["seconds"]) for t in tallies), default=0.0), 3),
        candidate=ours,
        baseline=current,
        prediction_psi=psi,
        agreement=round(agreed / compared, 6) if compared else None,
        shadow_skipped=sum(int(t.get("skipped", 0)) for t in tallies),
        breaches=breaches(ours, current, psi, spec.guardrails),
    )


def figures(version: int, tally: WindowTally, task: str) -> VersionFigures:
    """One version's figures from its merged tally."""
    latencies = np.asarray(tally.latencies_ms, dtype=float)
    feedback = tally.feedback
    return VersionFigures(
        version=version,
        requests=tally.requests,
        errors=tally.errors,
        error_rate=round(tally.errors / tally.requests, 6) if tally.requests else None,
        p50_ms=round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
        p99_ms=round(float(np.percentile(latencies, 99)), 3) if latencies.size else None,
        feedback=feedback,
        accuracy=round(tally.correct / feedback, 6) if feedback and task == "classification" else None,
        mae=round(tally.absolute_error / feedback, 6) if feedback and task == "regression" else None,
    )


def breaches(
    candidate: VersionFigures, baseline: VersionFigures, psi: float | None, rails: Guardrails
) -> list[str]:
    """Each guardrail the candidate breached, said with the figures that breached it."""
    found = []
    mine, theirs = candidate.error_rate or 0.0, baseline.error_rate or 0.0
    if candidate.requests and mine - theirs > rails.max_error_rate_increase:
        found.append(
            f"server errors: {candidate.errors} of {candidate.requests} requests ({mine:.2%}) against "
            f"{theirs:.2%} for version {baseline.version} (at most {rails.max_error_rate_increase:.2%} more)"
        )
    if candidate.p99_ms is not None and baseline.p99_ms is not None:
        slower = candidate.p99_ms - baseline.p99_ms
        if candidate.p99_ms > rails.max_p99_ratio * baseline.p99_ms and slower > rails.min_p99_excess_ms:
            found.append(
                f"latency p99 {candidate.p99_ms:.1f} ms against {baseline.p99_ms:.1f} ms "
                f"(at most {rails.max_p99_ratio}x)"
            )
    enough = min(candidate.feedback, baseline.feedback) >= rails.min_feedback
    if enough and candidate.accuracy is not None and baseline.accuracy is not None:
        drop = baseline.accuracy - candidate.accuracy
    else:
        drop = None
    if drop is not None and drop > rails.max_accuracy_drop:
        found.append(
            f"live accuracy {candidate.accuracy:.3f} ({candidate.feedback} feedback) against "
            f"{baseline.accuracy:.3f} ({baseline.feedback}) (at most {rails.max_accuracy_drop} lower)"
        )
    worse_mae = enough and candidate.mae is not None and baseline.mae is not None
    if worse_mae and candidate.mae > rails.max_mae_ratio * baseline.mae + 1e-12:  # type: ignore[operator]
        found.append(
            f"live MAE {candidate.mae:.4g} against {baseline.mae:.4g} (at most {rails.max_mae_ratio}x)"
        )
    if psi is not None and psi > rails.max_prediction_psi:
        found.append(
            f"prediction PSI {psi:.3f} against version {baseline.version}'s "
            f"(at most {rails.max_prediction_psi})"
        )
    return found


def prediction_psi(baseline: list[Any], candidate: list[Any], *, task: str) -> float | None:
    """How far the candidate's predictions are distributed from the baseline's (None: too few of either).

    Class labels are compared as categories; regression values in ten bins cut at the baseline's
    deciles.
    """
    if min(len(baseline), len(candidate)) < MIN_PSI_SAMPLES:
        return None
    if task == "classification":
        expected, actual = Counter(map(str, baseline)), Counter(map(str, candidate))
        keys = sorted(set(expected) | set(actual))
        return _psi([expected[k] for k in keys], [actual[k] for k in keys])
    values = np.asarray(baseline, dtype=float)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, _BINS + 1))[1:-1])
    expected_bins = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    actual_values = np.asarray(candidate, dtype=float)
    actual_bins = np.bincount(np.searchsorted(edges, actual_values, side="right"), minlength=len(edges) + 1)
    return _psi(expected_bins.tolist(), actual_bins.tolist())


def _psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    e_total, a_total = sum(expected), sum(actual)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = max(e / e_total, _PSI_FLOOR), max(a / a_total, _PSI_FLOOR)
        total += (q - p) * math.log(q / p)
    return round(total, 6)
