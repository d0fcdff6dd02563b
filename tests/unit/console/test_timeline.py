"""The console's fold of events into arrivals and pipelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.console.charts import psi_chart, waterfall_bars
from services.console.timeline import DriftPoint, Timeline
from services.console.traces import from_trace_file, jaeger_spans
from services.console.views import arrival_steps
from shared.events import DataArrived, DatasetRejected, DatasetValidated, RuleResult
from shared.events.envelope import ArtifactRef

REF = ArtifactRef(uri="s3://conveyor-artifacts/x/report.json", sha256="a" * 64, size_bytes=1)


def validated(arrival: DataArrived) -> DatasetValidated:
    return DatasetValidated.caused_by(
        arrival,
        producer="ingest",
        dataset_version="b" * 64,
        spec_version="spec-1",
        source_uri=arrival.uri,
        raw=REF,
        train=REF,
        test=REF,
        profile=REF,
        report=REF,
        rows=10,
        columns=["a", "target"],
    )


def test_an_arrival_fills_in_step_by_step_and_a_redelivery_changes_nothing() -> None:
    timeline = Timeline()
    arrival = DataArrived.first(producer="sdk", pipeline="churn", uri="s3://conveyor-landing/churn/a.csv")
    changed = timeline.add(arrival, trace_id="f" * 32)
    assert changed == {str(arrival.correlation_id), "churn"}
    steps = arrival_steps(timeline.arrivals[arrival.correlation_id])
    assert [s.state for s in steps[:3]] == ["done", "pending", "pending"]
    event = validated(arrival)
    timeline.add(event)
    timeline.add(event)
    found = timeline.arrivals[arrival.correlation_id]
    steps = arrival_steps(found)
    assert [s.state for s in steps[:3]] == ["done", "done", "pending"]
    assert steps[1].reports == [("validation report", REF.uri)] and steps[1].took_s is not None
    assert found.trace_id == "f" * 32 and found.outcome == "validated"
    assert timeline.pipelines["churn"].spec_version == "spec-1"


def test_a_failed_step_ends_the_graph() -> None:
    timeline = Timeline()
    arrival = DataArrived.first(producer="sdk", pipeline="churn", uri="s3://conveyor-landing/churn/a.csv")
    timeline.add(arrival)
    rule = RuleResult(rule="readable", passed=False, message="<b>not a CSV</b>")
    timeline.add(
        DatasetRejected.caused_by(arrival, producer="ingest", source_uri=arrival.uri, failures=[rule])
    )
    found = timeline.arrivals[arrival.correlation_id]
    assert found.failed and found.outcome == "DatasetRejected"
    assert [s.state for s in arrival_steps(found)][:4] == ["done", "failed", "skipped", "skipped"]


def test_psi_chart_keeps_the_highest_features_and_marks_those_over_the_threshold() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [
        DriftPoint(start + timedelta(minutes=i), 1, {"a": 0.01 * i, "b": 0.3, "c": 0.0}, 0.2)
        for i in range(5)
    ]
    chart = psi_chart(points, features=2)
    assert [s.feature for s in chart.series] == ["b", "a"]
    assert chart.series[0].over and not chart.series[1].over
    assert len(chart.series[0].points.split()) == 5 and 0 < chart.threshold_y < chart.height
    assert psi_chart([]).series == []


def test_trace_spans_from_jaeger_and_from_the_trace_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    body = {
        "data": [
            {
                "processes": {
                    "p1": {"serviceName": "conveyor-ingest"},
                    "p2": {"serviceName": "conveyor-train"},
                },
                "spans": [
                    {"processID": "p2", "operationName": "fit", "startTime": 3_000, "duration": 5_000},
                    {"processID": "p1", "operationName": "validate", "startTime": 1_000, "duration": 1_000},
                ],
            }
        ]
    }
    spans = jaeger_spans(body)
    assert [(s.service, s.start_ms, s.duration_ms) for s in spans] == [
        ("conveyor-ingest", 0.0, 1.0),
        ("conveyor-train", 2.0, 5.0),
    ]
    bars = waterfall_bars(spans)
    assert bars[0].x < bars[1].x and bars[1].width > bars[0].width
    lines = tmp_path / "spans.jsonl"
    lines.write_text(
        '{"trace_id": "t1", "service": "conveyor-sdk", "name": "arrival", "start": 1000000, "end": 3000000}\n'
        '{"trace_id": "t2", "service": "conveyor-x", "name": "other", "start": 1, "end": 2}\n'
        '{"trace_id": "t1", "service": "conv'  # a line still being appended
    )
    assert [(s.service, s.duration_ms) for s in from_trace_file(lines, "t1")] == [("conveyor-sdk", 2.0)]


def test_a_retried_step_that_succeeded_replaces_its_failure_but_never_the_reverse() -> None:
    timeline = Timeline()
    arrival = DataArrived.first(producer="sdk", pipeline="churn", uri="s3://conveyor-landing/churn/a.csv")
    rule = RuleResult(rule="readable", passed=False, message="MinIO away")
    rejected = DatasetRejected.caused_by(arrival, producer="ingest", source_uri=arrival.uri, failures=[rule])
    for event in (arrival, rejected, validated(arrival), rejected):
        timeline.add(event)
    found = timeline.arrivals[arrival.correlation_id]
    assert not found.failed and found.steps["validated"].event.__class__ is DatasetValidated
