"""Quality gates: the spec's metric bounds, and the improvement a challenger owes the champion."""

from __future__ import annotations

import math
from collections.abc import Mapping

from shared.events.envelope import GateResult
from shared.pipeline_spec import HIGHER_IS_BETTER, Gate, PipelineSpec

CHAMPION_GATE = "champion_improvement"
# Differences below this are float noise (0.3 - 0.2 < 0.1), not a worse model.
_TOLERANCE = 1e-9


def apply_gates(
    spec: PipelineSpec,
    *,
    metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None = None,
) -> list[GateResult]:
    """Every threshold gate of the spec, then the comparison with the champion (if any)."""
    results = [_threshold(gate, value=_finite(metrics.get(gate.metric))) for gate in spec.gates]
    results.append(_improvement(spec, metrics=metrics, champion_metrics=champion_metrics))
    return results


def _threshold(gate: Gate, *, value: float | None) -> GateResult:
    bound, threshold = gate.bound
    name = f"{bound}_{gate.metric}"
    if value is None:
        return GateResult(
            gate=name,
            metric=gate.metric,
            passed=False,
            value=None,
            threshold=threshold,
            message=f"{gate.metric} could not be measured, so the gate cannot pass",
        )
    passed = value >= threshold - _TOLERANCE if bound == "min" else value <= threshold + _TOLERANCE
    sign = ">=" if bound == "min" else "<="
    verdict = "holds" if passed else "fails"
    return GateResult(
        gate=name,
        metric=gate.metric,
        passed=passed,
        value=value,
        threshold=threshold,
        message=f"{gate.metric} {value:.4g} {sign} {threshold:.4g} {verdict}",
    )


def _improvement(
    spec: PipelineSpec,
    *,
    metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
) -> GateResult:
    metric, needed = spec.primary_metric, spec.min_improvement
    candidate = _finite(metrics.get(metric))

    def result(*, passed: bool, value: float | None, message: str) -> GateResult:
        return GateResult(
            gate=CHAMPION_GATE,
            metric=metric,
            passed=passed,
            value=value,
            threshold=needed,
            message=message,
        )

    if candidate is None:
        return result(passed=False, value=None, message=f"{metric} could not be measured")
    if champion_metrics is None:
        return result(passed=True, value=None, message="no champion yet: nothing to beat, gate skipped")
    champion = _finite(champion_metrics.get(metric))
    if champion is None:
        return result(
            passed=True,
            value=None,
            message=f"the champion has no {metric} on this test set; comparison skipped",
        )
    gain = candidate - champion if HIGHER_IS_BETTER[metric] else champion - candidate
    passed = gain >= needed - _TOLERANCE
    direction = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    return result(
        passed=passed,
        value=gain,
        message=(
            f"{metric}: challenger {candidate:.4g}, champion {champion:.4g} ({direction} is "
            f"better); improvement {gain:.4g}, at least {needed:.4g} needed"
        ),
    )


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
