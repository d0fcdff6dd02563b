"""An endpoint's live figures from Prometheus text as its workers expose it, and how the page shows them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from services.console.app import templates
from services.console.charts import psi_chart
from services.console.figures import Readings, increase, live_figures, parse_metrics, quantile
from services.console.views import DeploymentView, LiveView, live_view
from services.deploy.serving.metrics import serving_metrics

# BentoML's request histogram and counter, with its labels and its default buckets.
BENTOML_LABELS = ("endpoint", "http_response_code", "runner_name", "service_name", "service_version")
BENTOML_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0)


class Endpoint:
    """The metrics one endpoint's workers keep, in a registry of the test's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "bentoml_service_request_duration_seconds",
            "latency",
            BENTOML_LABELS,
            buckets=BENTOML_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter("bentoml_service_request", "requests", BENTOML_LABELS, registry=self.registry)
        real = serving_metrics()  # the serving worker's own names and labels
        self.feedback, self.correct, self.error = (
            Counter(m._name, m._documentation, m._labelnames, registry=self.registry)
            for m in (real.feedback, real.feedback_correct, real.feedback_absolute_error)
        )

    def request(self, seconds: float, *, route: str = "/v1/predict", status: str = "200") -> None:
        labels = (route, status, "conveyor_prediction", "conveyor_prediction", "not available")
        self.duration.labels(*labels).observe(seconds)
        self.requests.labels(*labels).inc()

    def joined(self, version: int, *, correct: bool | None = None, error: float | None = None) -> None:
        labels = {"pipeline": "churn", "version": str(version)}
        self.feedback.labels(**labels, outcome="matched").inc()
        if correct is not None:
            self.correct.labels(**labels).inc(int(correct))
        if error is not None:
            self.error.labels(**labels).inc(error)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def test_the_prediction_routes_count_and_quantiles_are_read_from_the_histogram() -> None:
    endpoint = Endpoint()
    for _ in range(60):
        endpoint.request(0.007)  # in the 5 to 10 ms bucket
    for _ in range(39):
        endpoint.request(0.020)  # 10 to 25 ms
    endpoint.request(0.300, status="500")  # 250 to 500 ms, failed
    for _ in range(50):
        endpoint.request(2.0, route="/v1/feedback")  # another route: not counted
    reading = parse_metrics(endpoint.text(), at=0.0)
    assert (reading.requests, reading.errors) == (100, 1)
    assert reading.buckets[-1] == (float("inf"), 100)
    # Interpolated within the bucket: p50 is the 50th of 60 requests between 5 and 10 ms.
    assert quantile(0.5, reading.buckets) == pytest.approx(0.005 + 0.005 * 50 / 60)
    assert quantile(0.99, reading.buckets) == pytest.approx(0.025)
    assert quantile(1.0, reading.buckets) == pytest.approx(0.5)
    figures = live_figures(None, reading)
    assert figures.rate_per_s is None and figures.recent is None
    assert figures.since_start.p50_ms == pytest.approx(9.1667, abs=1e-3)


def test_beyond_the_last_bound_the_last_bound_is_all_that_is_known() -> None:
    endpoint = Endpoint()
    endpoint.request(400.0)
    assert quantile(0.5, parse_metrics(endpoint.text(), at=0.0).buckets) == 180.0
    assert quantile(0.5, parse_metrics(Endpoint().text(), at=0.0).buckets) is None


def test_rate_and_latency_are_measured_between_two_readings_of_the_window() -> None:
    endpoint, readings = Endpoint(), Readings(window_s=60)
    for _ in range(500):
        endpoint.request(0.007)
    assert readings.add("http://e", parse_metrics(endpoint.text(), at=100.0)) is None
    # Less than a second later: too close to measure from.
    assert readings.add("http://e", parse_metrics(endpoint.text(), at=100.5)) is None
    for _ in range(20):
        endpoint.request(0.4)  # slow requests, all after the first reading
    now = parse_metrics(endpoint.text(), at=110.0)
    earlier = readings.add("http://e", now)
    assert earlier is not None and earlier.at == 100.0
    figures = live_figures(earlier, now)
    assert figures.over_s == 10.0 and figures.rate_per_s == pytest.approx(2.0)
    assert figures.recent is not None and figures.recent.requests == 20
    assert 250 < figures.recent.p50_ms < 500  # the window's requests only, not the 500 fast ones before
    assert figures.since_start.p50_ms < 10
    # A reading older than the window is not measured from any more.
    assert readings.add("http://e", parse_metrics(endpoint.text(), at=165.0)) == now


def test_an_endpoint_started_again_counts_from_zero() -> None:
    before, after = Endpoint(), Endpoint()
    for _ in range(30):
        before.request(0.007)
    for _ in range(5):
        after.request(0.02)
    counted = increase(parse_metrics(before.text(), at=0.0), parse_metrics(after.text(), at=5.0))
    assert counted.requests == 5 and counted.buckets[-1][1] == 5


def test_live_accuracy_and_error_come_from_the_feedback_counters_per_version() -> None:
    endpoint = Endpoint()
    for correct in (True, True, True, False):
        endpoint.joined(2, correct=correct)
    endpoint.joined(1, correct=False)
    endpoint.feedback.labels(pipeline="churn", version="2", outcome="unknown").inc(7)  # not joined
    regression = Endpoint()
    regression.joined(3, error=1.5)
    regression.joined(3, error=0.5)
    feedback = parse_metrics(endpoint.text(), at=0.0).feedback
    assert feedback[2].joined == 4 and feedback[2].accuracy == 0.75 and feedback[2].mae is None
    assert feedback[1].accuracy == 0.0
    assert parse_metrics(regression.text(), at=0.0).feedback[3].mae == 1.0


DEPLOYMENT = {
    "pipeline": "churn",
    "endpoint_url": "http://127.0.0.1:1",
    "environment": "production",
    "active_version": 2,
    "serving_version": 2,
    "previous_version": 1,
    "versions": [1, 2],
}


def render_deployments(live: LiveView) -> str:
    view = DeploymentView(live.deployment, live, psi_chart([]), [(datetime.now(UTC), "DriftDetected", "x")])
    return templates().env.get_template("deployments.html").render(deployments=[view], csrf="c")


def test_the_deployments_page_shows_rate_latency_and_accuracy_of_each_version() -> None:
    endpoint = Endpoint()
    for _ in range(60):
        endpoint.request(0.007)
    earlier = parse_metrics(endpoint.text(), at=0.0)
    for _ in range(30):
        endpoint.request(0.02)
    for correct in (True, False):
        endpoint.joined(1, correct=correct)
    endpoint.joined(2, correct=True)
    figures = live_figures(earlier, parse_metrics(endpoint.text(), at=15.0))
    performance = {"task": "classification", "captured": 90, "capture_dropped": 0, "capture_published": 90}
    html = render_deployments(LiveView(DEPLOYMENT, {**performance, "worker": 1}, None, figures, None))
    text = re.sub(r"<[^>]+>", "", html)
    assert "2.00 requests/s over the last 15 s" in text
    assert "p50 17.5 ms · p99 24.9 ms over the last 15 s (30 requests)" in text
    assert "p50 8.8 ms · p99 24.5 ms over 90 requests, 0 failed (5xx)" in text
    assert "v2: 1.0000 (1 feedback) · v1: 0.5000 (2 feedback)" in text  # the active version first
    assert 'hx-get="/deployments/churn/figures" hx-trigger="every 10s"' in html


def test_an_endpoint_whose_metrics_cannot_be_read_says_why() -> None:
    html = render_deployments(live_view(Readings(), DEPLOYMENT))  # nothing listens on port 1
    assert "metrics unreachable: ConnectError" in html and "unreachable: ConnectError" in html
    first = live_figures(None, parse_metrics(Endpoint().text(), at=0.0))
    text = re.sub(r"<[^>]+>", "", render_deployments(LiveView(DEPLOYMENT, None, "x", first, None)))
    assert "measured from the next reading" in text and "no feedback yet" in text and "no requests" in text
