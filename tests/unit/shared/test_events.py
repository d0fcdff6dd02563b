"""Event contracts: JSON round trip, envelope rules, and the committed JSON Schemas."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from shared import topics
from shared.events import (
    ALL_EVENTS,
    EVENT_BY_TOPIC,
    ArtifactRef,
    CapturedPrediction,
    ChampionComparison,
    DataArrived,
    DatasetRejected,
    DeploymentTarget,
    Event,
    GateResult,
    LineageSummary,
    ReleaseWindow,
    RuleResult,
    VersionFigures,
)
from shared.events.schema_export import render_schema, schema_file

DIGEST = "a" * 64
REF = ArtifactRef(uri="s3://conveyor-artifacts/x/y.bin", sha256=DIGEST, size_bytes=10)

# One valid value per field name that events use, beyond the envelope.
SAMPLE_FIELDS: dict[str, Any] = {
    "uri": "s3://conveyor-landing/churn/2026-11-26.csv",
    "format": "csv",
    "reason": "drift on tenure",
    "dataset_uri": None,
    "drift_report_uri": None,
    "dataset_version": DIGEST,
    "spec_version": "spec-0123456789abcdef",
    "code_version": "0.1.0+abc1234",
    "source_uri": "s3://conveyor-landing/churn/2026-11-26.csv",
    "raw": REF,
    "train": REF,
    "test": REF,
    "profile": REF,
    "report": REF,
    "rows": 569,
    "columns": ["a", "b", "target"],
    "warnings": [RuleResult(rule="drift", passed=False, severity="warning", figure=0.3, threshold=0.2)],
    "failures": [RuleResult(rule="min_rows", passed=False, figure=3, threshold=50)],
    "run_id": "run-0123456789abcdef",
    "model": REF,
    "lineage": REF,
    "hyperparameters": {"C": 1.0, "penalty": "l2"},
    "cv_metric": "accuracy",
    "cv_score": 0.95,
    "training_seconds": 1.5,
    "error_type": "ValueError",
    "metrics": {"accuracy": 0.96},
    "champion": ChampionComparison(champion_version=1, champion_metrics={"accuracy": 0.95}),
    "gates": [GateResult(gate="accuracy_min", metric="accuracy", passed=True, value=0.96, threshold=0.9)],
    "passed": True,
    "failure_reason": None,
    "version": 2,
    "status": "Approved",
    "deployment": DeploymentTarget(realtime=True, batch=True),
    "approved_by": "auto",
    "comment": "",
    "signature": "",
    "runtime": None,
    "engine": "spark",
    "spark_master": "spark://127.0.0.1:7177",
    "rejected_by": "alice",
    "promoted_by": "pat",
    "from_environment": "staging",
    "endpoint_url": "http://127.0.0.1:3000",
    "environment": "local",
    "input_uri": "s3://conveyor-landing/churn/score.parquet",
    "output_uri": "s3://conveyor-artifacts/churn/batch/out.parquet",
    "duration_seconds": 2.5,
    "predictions": [
        CapturedPrediction(
            prediction_id="p-1",
            captured_at="2026-11-26T12:00:00Z",
            features={"a": 1.0, "b": "x"},
            prediction=1,
        )
    ],
    "window_size": 500,
    "psi": {"a": 0.31},
    "threshold": 0.2,
    "report_uri": None,
    "drifted_features": ["a"],
    "baseline_version": 1,
    "strategy": "canary",
    "shares": [10.0, 10.0, 10.0],
    "window": ReleaseWindow(
        step=1,
        share=10.0,
        seconds=60.0,
        candidate=VersionFigures(version=2, requests=60, errors=3, error_rate=0.05, p50_ms=2.0, p99_ms=9.0),
        baseline=VersionFigures(version=1, requests=540, errors=0, error_rate=0.0, p50_ms=2.0, p99_ms=8.0),
        prediction_psi=0.02,
        breaches=["server errors: 3 of 60 requests (5.00%) against 0.00% for version 1"],
    ),
    "next_share": None,
    "by": "guardrails",
    "step": 1,
    "windows_passed": 0,
}
SAMPLE_FIELDS["lineage"] = REF


def sample(event_type: type[Event]) -> Event:
    """A valid instance of ``event_type`` built from SAMPLE_FIELDS."""
    names = set(event_type.model_fields) - set(Event.model_fields)
    fields = {name: SAMPLE_FIELDS[name] for name in names}
    if event_type.__name__ in ("ModelApproved", "ModelPromoted"):
        fields["lineage"] = LineageSummary(
            run_id="run-1",
            dataset_version=DIGEST,
            spec_version="spec-1",
            code_version="0.1.0",
            framework_version="1.9.1",
            lineage_uri=REF.uri,
        )
    return event_type.first(producer="test", pipeline="churn", **fields)


@pytest.mark.parametrize("event_type", ALL_EVENTS, ids=lambda e: e.__name__)
def test_every_event_round_trips_through_json(event_type: type[Event]) -> None:
    event = sample(event_type)
    assert event_type.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("event_type", ALL_EVENTS, ids=lambda e: e.__name__)
def test_committed_schema_is_current(event_type: type[Event]) -> None:
    path = schema_file(event_type)
    assert path.exists(), f"{path} is missing: run python -m shared.events.schema_export"
    assert path.read_text() == render_schema(event_type), (
        f"{path.name} is stale: run python -m shared.events.schema_export and commit the result"
    )


def test_topics_follow_the_naming_rule_and_are_unique() -> None:
    assert len(EVENT_BY_TOPIC) == len(ALL_EVENTS)
    for topic in EVENT_BY_TOPIC:
        parts = topic.split(".")
        assert parts[0] == "conveyor" and len(parts) == 3, topic
    assert topics.dead_letter_topic(topics.DATA_ARRIVED) == "conveyor.data.arrived.dlq"


def test_events_are_frozen_and_refuse_unknown_fields() -> None:
    event = sample(DataArrived)
    with pytest.raises(ValidationError):
        event.uri = "s3://elsewhere/x"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        DataArrived.model_validate({**json.loads(event.model_dump_json()), "surprise": 1})


def test_unknown_schema_version_is_refused() -> None:
    payload = {**json.loads(sample(DataArrived).model_dump_json()), "schema_version": 2}
    with pytest.raises(ValidationError, match="schema_version"):
        DataArrived.model_validate(payload)


def test_naive_timestamps_and_unsafe_pipeline_names_are_refused() -> None:
    payload = json.loads(sample(DataArrived).model_dump_json())
    with pytest.raises(ValidationError, match="occurred_at"):
        DataArrived.model_validate({**payload, "occurred_at": "2026-11-26T12:00:00"})
    for name in ("../etc", "Churn", "a b", "", "x" * 64):
        with pytest.raises(ValidationError, match="pipeline"):
            DataArrived.model_validate({**payload, "pipeline": name})


def test_caused_by_carries_the_chain_and_derives_a_stable_id() -> None:
    cause = sample(DataArrived)
    effect = RuleResult(rule="min_rows", passed=False)

    one = DatasetRejected.caused_by(cause, producer="ingest", source_uri=cause.uri, failures=[effect])
    again = DatasetRejected.caused_by(cause, producer="ingest", source_uri=cause.uri, failures=[effect])
    assert one.correlation_id == cause.correlation_id
    assert one.causation_id == cause.event_id
    assert one.pipeline == cause.pipeline
    assert one.event_id == again.event_id  # a redelivered cause yields the same event id
    assert isinstance(one.event_id, UUID) and one.event_id != cause.event_id
    assert one.key == b"churn"
