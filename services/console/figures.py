"""An endpoint's request rate, latency p50/p99 and live accuracy, read from its Prometheus ``/metrics``.

The workers of an endpoint add up their counters in one directory, so a single scrape of
``/metrics`` covers the whole endpoint: BentoML's request counter and latency histogram (over every
version the endpoint served: they carry no version label) and Conveyor's feedback counters (per
version). Counters are totals since the endpoint started, so a rate needs two readings: the
console keeps each endpoint's readings of the last minute (nothing it could not read again) and
measures rate and latency between the oldest and the newest, as Prometheus's ``rate`` and
``histogram_quantile`` would. Until a second reading exists, the rate is unknown and only the
figures since the start are shown.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

PREDICT = "/v1/predict"
WINDOW_S = 60.0  # how far back the rate and the window's latency look
MIN_INTERVAL_S = 1.0  # two readings closer than this give no meaningful rate
_KEPT = 240  # readings per endpoint, whatever the number of open pages polling it
_REQUESTS = "bentoml_service_request_total"
_LATENCY_BUCKET = "bentoml_service_request_duration_seconds_bucket"
_JOINED, _CORRECT, _ERROR = (
    "conveyor_feedback_total",
    "conveyor_feedback_correct_total",
    "conveyor_feedback_absolute_error_total",
)


@dataclass(frozen=True)
class Feedback:
    """One version's ground truths joined so far, and how its predictions fared."""

    joined: float = 0.0
    correct: float | None = None  # classification
    absolute_error: float | None = None  # regression: the sum

    @property
    def accuracy(self) -> float | None:
        """Share of joined predictions that were right (classification)."""
        return self.correct / self.joined if self.correct is not None and self.joined else None

    @property
    def mae(self) -> float | None:
        """Mean absolute error of joined predictions (regression)."""
        return self.absolute_error / self.joined if self.absolute_error is not None and self.joined else None


@dataclass(frozen=True)
class Reading:
    """One scrape of an endpoint's ``/metrics``: totals since its start."""

    at: float  # time.monotonic() when read
    requests: float  # prediction requests answered, any status
    errors: float  # of which 5xx
    buckets: tuple[tuple[float, float], ...]  # (upper bound in s, cumulative count), ending at +Inf
    feedback: dict[int, Feedback] = field(default_factory=dict)


def parse_metrics(text: str, *, at: float) -> Reading:
    """The prediction route's request count and latency histogram, and feedback per version."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    joined: dict[int, float] = {}
    correct: dict[int, float] = {}
    absolute: dict[int, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == _REQUESTS and labels.get("endpoint") == PREDICT:
                requests += value
                errors += value if labels.get("http_response_code", "").startswith("5") else 0.0
            elif sample.name == _LATENCY_BUCKET and labels.get("endpoint") == PREDICT:
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value  # summed over response codes
            elif sample.name == _JOINED and labels.get("outcome") == "matched":
                _add(joined, labels, value)
            elif sample.name == _CORRECT:
                _add(correct, labels, value)
            elif sample.name == _ERROR:
                _add(absolute, labels, value)
    feedback = {
        version: Feedback(joined[version], correct.get(version), absolute.get(version)) for version in joined
    }
    return Reading(at, requests, errors, tuple(sorted(buckets.items())), feedback)


def _add(totals: dict[int, float], labels: dict[str, str], value: float) -> None:
    version = int(labels.get("version", "0"))
    totals[version] = totals.get(version, 0.0) + value


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The ``q`` quantile (seconds) of a cumulative histogram, interpolated within its bucket.

    The same estimate as Prometheus's ``histogram_quantile``: exact only to the bucket's bounds.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):  # beyond the last finite bound: that bound is all that is known
                return lower_bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def increase(earlier: Reading, now: Reading) -> Reading:
    """What was counted between two readings; a restarted endpoint's counters count from zero again."""
    restarted = now.requests < earlier.requests or [b for b, _ in now.buckets] != [
        b for b, _ in earlier.buckets
    ]
    if restarted:
        return now
    previous = dict(earlier.buckets)
    return Reading(
        at=now.at,
        requests=now.requests - earlier.requests,
        errors=now.errors - earlier.errors,
        buckets=tuple((bound, count - previous[bound]) for bound, count in now.buckets),
    )


@dataclass(frozen=True)
class Latency:
    """Latency quantiles of a set of prediction requests, in milliseconds."""

    requests: float
    p50_ms: float | None
    p99_ms: float | None


def latency(reading: Reading) -> Latency:
    """p50 and p99 of the requests a reading (or an increase between two) counts."""

    def ms(q: float) -> float | None:
        value = quantile(q, reading.buckets)
        return value * 1000 if value is not None else None

    return Latency(reading.buckets[-1][1] if reading.buckets else 0.0, ms(0.5), ms(0.99))


@dataclass(frozen=True)
class LiveFigures:
    """An endpoint's figures: over the last interval measured, and since it started."""

    requests: float
    errors: float
    since_start: Latency
    over_s: float | None = None  # the interval measured; None until a second reading
    rate_per_s: float | None = None
    recent: Latency | None = None
    feedback: dict[int, Feedback] = field(default_factory=dict)


def live_figures(earlier: Reading | None, now: Reading) -> LiveFigures:
    """The figures of ``now``, and of the interval since ``earlier`` when there is one."""
    figures = LiveFigures(now.requests, now.errors, latency(now), feedback=now.feedback)
    if earlier is None:
        return figures
    over = now.at - earlier.at
    counted = increase(earlier, now)
    return LiveFigures(
        now.requests,
        now.errors,
        figures.since_start,
        over_s=over,
        rate_per_s=counted.requests / over,
        recent=latency(counted),
        feedback=now.feedback,
    )


class Readings:
    """Each endpoint's readings of the last ``window_s`` seconds."""

    def __init__(self, *, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._kept: dict[str, deque[Reading]] = {}

    def add(self, endpoint: str, reading: Reading) -> Reading | None:
        """Keep ``reading``; the oldest one in the window to measure from, if any is old enough."""
        kept = self._kept.setdefault(endpoint, deque(maxlen=_KEPT))
        while kept and reading.at - kept[0].at > self._window_s:
            kept.popleft()
        earlier = kept[0] if kept and reading.at - kept[0].at >= MIN_INTERVAL_S else None
        kept.append(reading)
        return earlier


def read_figures(
    readings: Readings, endpoint_url: str, *, timeout: float = 3.0
) -> tuple[LiveFigures | None, str | None]:
    """The endpoint's figures now, or why its ``/metrics`` could not be read."""
    try:
        response = httpx.get(f"{endpoint_url.rstrip('/')}/metrics", timeout=timeout)
    except httpx.HTTPError as error:
        return None, f"metrics unreachable: {type(error).__name__}"
    if response.status_code != 200:
        return None, f"metrics answered {response.status_code}"
    now = parse_metrics(response.text, at=time.monotonic())
    return live_figures(readings.add(endpoint_url, now), now), None
