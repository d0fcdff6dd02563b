"""Quality gates and the champion comparison."""

from __future__ import annotations

from typing import Any

import pytest

from services.evaluate.gates import CHAMPION_GATE, apply_gates
from shared.events.envelope import GateResult
from shared.pipeline_spec import PipelineSpec


def make_spec(**fields: Any) -> PipelineSpec:
    return PipelineSpec.from_mapping({"name": "p", "target": "y"} | fields)


def gate(results: list[GateResult], name: str) -> GateResult:
    (found,) = [r for r in results if r.gate == name]
    return found


def classification(**fields: Any) -> PipelineSpec:
    return make_spec(task="classification", **fields)


def test_threshold_gate_passes_and_fails() -> None:
    spec = classification(gates=[{"metric": "accuracy", "min": 0.8}])
    passing = apply_gates(spec, metrics={"accuracy": 0.85, "f1_macro": 0.8})
    assert gate(passing, "min_accuracy").passed
    assert all(r.passed for r in passing)
    failing = apply_gates(spec, metrics={"accuracy": 0.75, "f1_macro": 0.8})
    result = gate(failing, "min_accuracy")
    assert (result.passed, result.value, result.threshold) == (False, 0.75, 0.8)
    assert not all(r.passed for r in failing)


def test_a_value_on_the_threshold_passes() -> None:
    spec = classification(gates=[{"metric": "accuracy", "min": 0.3}])
    assert gate(apply_gates(spec, metrics={"accuracy": 0.1 + 0.2}), "min_accuracy").passed


def test_lower_is_better_metric() -> None:
    spec = make_spec(task="regression", gates=[{"metric": "rmse", "max": 50.0}])
    assert gate(apply_gates(spec, metrics={"rmse": 40.0}), "max_rmse").passed
    failed = gate(apply_gates(spec, metrics={"rmse": 60.0}), "max_rmse")
    assert not failed.passed and "60 <= 50 fails" in failed.message


def test_unmeasured_metric_fails_its_gate() -> None:
    spec = classification(gates=[{"metric": "roc_auc", "min": 0.7}])
    for metrics in ({"f1_macro": 0.9}, {"f1_macro": 0.9, "roc_auc": float("nan")}):
        result = gate(apply_gates(spec, metrics=metrics), "min_roc_auc")
        assert not result.passed and result.value is None


def test_no_champion_means_nothing_to_beat() -> None:
    spec = classification(min_improvement=0.05)
    result = gate(apply_gates(spec, metrics={"f1_macro": 0.5}), CHAMPION_GATE)
    assert result.passed and result.value is None
    assert "no champion" in result.message
    assert (result.metric, result.threshold) == ("f1_macro", 0.05)


def test_min_improvement_over_champion() -> None:
    spec = classification(min_improvement=0.02)
    champion = {"f1_macro": 0.80}
    enough = gate(apply_gates(spec, metrics={"f1_macro": 0.83}, champion_metrics=champion), CHAMPION_GATE)
    assert enough.passed and enough.value == pytest.approx(0.03)
    short = gate(apply_gates(spec, metrics={"f1_macro": 0.81}, champion_metrics=champion), CHAMPION_GATE)
    assert not short.passed and "champion 0.8" in short.message
    worse = gate(apply_gates(spec, metrics={"f1_macro": 0.7}, champion_metrics=champion), CHAMPION_GATE)
    assert not worse.passed and worse.value == pytest.approx(-0.1)


def test_zero_min_improvement_accepts_a_tie() -> None:
    spec = classification()
    result = gate(
        apply_gates(spec, metrics={"f1_macro": 0.8}, champion_metrics={"f1_macro": 0.8}),
        CHAMPION_GATE,
    )
    assert result.passed


def test_improvement_on_a_lower_is_better_metric() -> None:
    spec = make_spec(task="regression", min_improvement=3.0)
    champion = {"rmse": 50.0}
    better = gate(apply_gates(spec, metrics={"rmse": 45.0}, champion_metrics=champion), CHAMPION_GATE)
    assert better.passed and better.value == pytest.approx(5.0)
    slightly = gate(apply_gates(spec, metrics={"rmse": 48.0}, champion_metrics=champion), CHAMPION_GATE)
    assert not slightly.passed and slightly.value == pytest.approx(2.0)


def test_champion_without_the_metric_is_not_compared() -> None:
    spec = classification(min_improvement=0.01)
    result = gate(
        apply_gates(spec, metrics={"f1_macro": 0.8}, champion_metrics={"accuracy": 0.9}),
        CHAMPION_GATE,
    )
    assert result.passed and "comparison skipped" in result.message


def test_every_gate_is_reported_in_order() -> None:
    spec = classification(
        gates=[{"metric": "accuracy", "min": 0.9}, {"metric": "log_loss", "max": 0.4}],
        min_improvement=0.0,
    )
    results = apply_gates(
        spec,
        metrics={"accuracy": 0.95, "log_loss": 0.5, "f1_macro": 0.9},
        champion_metrics={"f1_macro": 0.85},
    )
    assert [r.gate for r in results] == ["min_accuracy", "max_log_loss", CHAMPION_GATE]
    assert [r.passed for r in results] == [True, False, True]
