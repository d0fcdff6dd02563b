"""Release windows judged from workers' tallies: each guardrail, the merge, and the release shares."""

from __future__ import annotations

from typing import Any

import pytest

from services.deploy.guardrails import judge, prediction_psi, window_ready
from services.deploy.serving.tally import WindowTally
from shared.pipeline_spec import PipelineSpec, SpecError
from shared.release import ReleaseSpec

SPEC = ReleaseSpec(strategy="canary", percent=10, steps=2, interval_seconds=5, min_requests=20)


def _tally(*, requests: int, errors: int = 0, ms: float = 2.0, labels: list[Any] | None = None,
           feedback: int = 0, correct: int = 0) -> dict[str, Any]:  # fmt: skip
    tally = WindowTally()
    for index in range(requests - errors):
        tally.answered(ms, [labels[index % len(labels)]] if labels else [1])
    for _ in range(errors):
        tally.failed(ms)
    for index in range(feedback):
        tally.joined(correct=index < correct, absolute_error=None)
    return tally.to_json()


def _worker(candidate: dict[str, Any], baseline: dict[str, Any], *, seconds: float = 6.0) -> dict[str, Any]:
    return {"version": 2, "mode": "canary", "share": 10.0, "seconds": seconds,
            "candidate": candidate, "baseline": baseline, "compared": 0, "agreed": 0}  # fmt: skip


def _judge(*workers: dict[str, Any], spec: ReleaseSpec = SPEC) -> Any:
    return judge(list(workers), spec=spec, step=1, share=10.0, candidate=2, baseline=1, task="classification")


def test_a_window_is_ready_after_its_interval_and_enough_candidate_requests() -> None:
    assert not window_ready([], SPEC)
    assert not window_ready([_worker(_tally(requests=50), _tally(requests=400), seconds=4.9)], SPEC)
    assert not window_ready([_worker(_tally(requests=19), _tally(requests=400))], SPEC)
    # Two workers' candidate requests add up.
    assert window_ready([_worker(_tally(requests=10), _tally(requests=90))] * 2, SPEC)


def test_a_good_candidate_breaches_nothing_and_workers_are_merged() -> None:
    labels = [0, 1, 1]
    good = _worker(_tally(requests=60, labels=labels), _tally(requests=540, labels=labels))
    window = _judge(good, good)
    assert window.breaches == []
    assert (window.candidate.requests, window.baseline.requests) == (120, 1080)
    assert window.candidate.error_rate == 0.0 and window.prediction_psi == pytest.approx(0.0, abs=1e-3)
    assert window.candidate.p99_ms == 2.0


def test_server_errors_above_the_baseline_breach_with_their_figures() -> None:
    window = _judge(_worker(_tally(requests=60, errors=6), _tally(requests=540)))
    [breach] = window.breaches
    assert "6 of 60 requests (10.00%)" in breach and "version 1" in breach
    assert window.candidate.errors == 6 and window.candidate.error_rate == 0.1


def test_a_slower_p99_breaches_only_past_the_ratio_and_the_floor() -> None:
    assert _judge(_worker(_tally(requests=60, ms=100.0), _tally(requests=540, ms=10.0))).breaches
    # 3x slower but only 4 ms: noise on a small model, not a breach.
    assert not _judge(_worker(_tally(requests=60, ms=6.0), _tally(requests=540, ms=2.0))).breaches


def test_live_accuracy_is_judged_only_with_feedback_enough_on_both_sides() -> None:
    bad = _tally(requests=60, feedback=30, correct=15)
    good = _tally(requests=540, feedback=30, correct=29)
    [breach] = _judge(_worker(bad, good)).breaches
    assert breach.startswith("live accuracy 0.500 (30 feedback) against 0.967")
    few = _tally(requests=60, feedback=5, correct=0)
    assert _judge(_worker(few, good)).breaches == []


def test_predictions_distributed_unlike_the_baseline_breach() -> None:
    window = _judge(_worker(_tally(requests=100, labels=[0]), _tally(requests=500, labels=[1])))
    assert window.prediction_psi is not None and window.prediction_psi > 5
    assert any(b.startswith("prediction PSI") for b in window.breaches)


def test_prediction_psi_of_regression_values_and_of_too_few() -> None:
    values = [float(v) for v in range(500)]
    assert prediction_psi(values, values[::3], task="regression") == pytest.approx(0.0, abs=0.05)
    assert prediction_psi(values, [v + 1000 for v in values], task="regression") > 5  # type: ignore[operator]
    assert prediction_psi(values, values[:10], task="regression") is None


@pytest.mark.parametrize(
    ("release", "shares"),
    [
        ({"strategy": "all_at_once"}, []),
        ({"strategy": "shadow", "steps": 2}, [0.0, 0.0]),
        ({"strategy": "canary", "percent": 5, "steps": 3}, [5.0, 5.0, 5.0]),
        ({"strategy": "linear", "percent": 25}, [25.0, 50.0, 75.0]),
        ({"strategy": "linear", "percent": 30}, [30.0, 60.0, 90.0]),
    ],
)
def test_each_strategy_has_its_shares(release: dict[str, Any], shares: list[float]) -> None:
    assert ReleaseSpec.model_validate(release).shares() == shares


def test_a_spec_declares_its_release_and_bad_values_are_refused() -> None:
    base = {"name": "churn", "target": "y", "task": "classification"}
    spec = PipelineSpec.from_mapping(
        {**base, "deployment": {"release": {"strategy": "canary", "percent": 20}}}
    )
    assert spec.deployment.release.gradual and spec.deployment.release.shares() == [20.0] * 3
    assert not PipelineSpec.from_mapping(base).deployment.release.gradual
    for bad in (
        {"strategy": "blue_green"},
        {"percent": 0},
        {"percent": 100},
        {"strategy": "linear", "percent": 60},
    ):
        with pytest.raises(SpecError):
            PipelineSpec.from_mapping({**base, "deployment": {"release": bad}})
