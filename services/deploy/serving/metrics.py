"""Prometheus metrics of a serving worker, shown on BentoML's /metrics next to its own.

Created on first use, inside the worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR, so
counters from every worker of a server add up.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

_LABELS = ("pipeline", "version")


@dataclass(frozen=True)
class ServingMetrics:
    """The counters and gauges a serving worker keeps."""

    predictions: Counter
    captured: Counter
    capture_dropped: Counter
    feedback: Counter
    feedback_correct: Counter
    feedback_absolute_error: Counter
    live_accuracy: Gauge
    live_mae: Gauge


@functools.cache
def serving_metrics() -> ServingMetrics:
    """This process's metrics (created once)."""
    return ServingMetrics(
        predictions=Counter("conveyor_predictions", "Rows predicted.", _LABELS),
        captured=Counter("conveyor_captured_predictions", "Predictions queued for capture.", _LABELS),
        capture_dropped=Counter(
            "conveyor_capture_dropped", "Sampled predictions dropped because the queue was full.", _LABELS
        ),
        feedback=Counter("conveyor_feedback", "Ground-truth values received.", (*_LABELS, "outcome")),
        feedback_correct=Counter(
            "conveyor_feedback_correct", "Joined classifications that were correct.", _LABELS
        ),
        feedback_absolute_error=Counter(
            "conveyor_feedback_absolute_error", "Sum of absolute errors of joined regressions.", _LABELS
        ),
        live_accuracy=Gauge(
            "conveyor_live_accuracy", "Accuracy of joined feedback.", _LABELS, multiprocess_mode="mostrecent"
        ),
        live_mae=Gauge(
            "conveyor_live_mae",
            "Mean absolute error of joined feedback.",
            _LABELS,
            multiprocess_mode="mostrecent",
        ),
    )
