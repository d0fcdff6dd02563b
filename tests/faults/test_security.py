"""Inputs peers got wrong (DESIGN.md): traversal and internal-address URIs, pickles as models and bodies."""

from __future__ import annotations

import asyncio
import pickle
import uuid
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shared.events import (
    ArtifactRef,
    BatchPredictionFailed,
    BatchPredictionRequested,
    DataArrived,
    DatasetRejected,
    DatasetValidated,
    DeploymentFailed,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelTrained,
    RetrainRequested,
)
from shared.messaging import KafkaEventPublisher, create_broker
from shared.settings import Settings
from shared.uris import ObjectLocation
from tests.e2e.conftest import Stack
from tests.faults.burst import cheap_spec, feature_row
from tests.faults.conftest import Served

pytestmark = pytest.mark.infra

E = TypeVar("E", bound=Event)


def traversals(settings: Settings, pipeline: str) -> list[str]:
    """URIs that reach, or try to reach, outside the landing bucket (MLflow's and BentoML's CVE shapes)."""
    landing, artifacts = settings.landing_bucket, settings.artifacts_bucket
    return [
        f"s3://{landing}/{pipeline}/../../{artifacts}/specs/{pipeline}/current.json",
        f"s3://{landing}/{pipeline}/..%2f..%2f{artifacts}%2fsecret.csv",
        f"s3://{landing}/{pipeline}/%2e%2e/%2e%2e/secret.csv",
        f"s3://{landing}/{pipeline}/data.csv#/../../../secret.csv",
        f"s3://{landing}/{pipeline}/data.csv?/../../secret.csv",
        f"s3://{landing}/{pipeline}/..\\..\\secret.csv",
        f"s3://{landing}//proc/self/root/etc/passwd",
        "file:///etc/passwd",
        "/etc/passwd",
        "s3://another-bucket/secret.csv",
        # Server-side requests to internal addresses (BentoML CVE-2025-54381).
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        f"http://127.0.0.1:{settings.minio_port}/{artifacts}/specs/{pipeline}/current.json",
        "https://localhost/secret.csv",
    ]


class CodeOnLoad:
    """Unpickling this creates ``path``: proof that someone deserialised it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def forged(event: E, **changes: Any) -> E:
    """A new chain's event with the fields of ``event`` but ``changes``."""
    kept = event.model_dump(exclude={"event_id", "correlation_id", "causation_id", "occurred_at"})
    return type(event).first(**{**kept, "producer": "faults", **changes})


async def publish(settings: Settings, *events: Event) -> None:
    broker = create_broker(settings)
    await broker.connect()
    try:
        for event in events:
            await KafkaEventPublisher(broker).publish(event)
    finally:
        await broker.stop()


async def test_traversal_and_internal_uris_in_arrivals_are_rejected_unread(
    stack: Stack, pipeline_name: str
) -> None:
    await asyncio.to_thread(stack.specs.apply, cheap_spec(pipeline_name))
    uris = [*traversals(stack.settings, pipeline_name), f"s3://{stack.settings.artifacts_bucket}/specs/x.csv"]
    start = {"producer": "faults", "pipeline": pipeline_name}
    arrivals = [DataArrived.first(**start, uri=uri) for uri in uris]
    retrains = [RetrainRequested.first(**start, reason="security test", dataset_uri=uri) for uri in uris]
    await publish(stack.settings, *arrivals, *retrains)

    for event in (*arrivals, *retrains):
        rejected = await stack.watcher.wait_for(
            DatasetRejected, correlation_id=event.correlation_id, timeout=60
        )
        assert isinstance(rejected, DatasetRejected)
        uri = event.uri if isinstance(event, DataArrived) else event.dataset_uri
        assert [f.rule for f in rejected.failures] == ["source.uri_allowed"], (uri, rejected.failures)
        assert stack.watcher.events(DatasetValidated, correlation_id=event.correlation_id) == []
    stored = stack.store.list_keys(
        bucket=stack.settings.artifacts_bucket, prefix=f"datasets/{pipeline_name}/"
    )
    assert stored == [], f"ingest read and stored something for refused URIs: {stored}"


async def test_traversal_and_internal_uris_in_batch_requests_fail_unread(
    stack: Stack, served: Served
) -> None:
    start = {"producer": "faults", "pipeline": served.pipeline}
    requests = [
        BatchPredictionRequested.first(**start, input_uri=uri) for uri in traversals(stack.settings, "x")
    ]
    await publish(stack.settings, *requests)
    for request in requests:
        failed = await stack.watcher.wait_for(BatchPredictionFailed, correlation_id=request.correlation_id)
        assert isinstance(failed, BatchPredictionFailed)
        assert failed.reason.startswith("UnsafeUriError"), (request.input_uri, failed.reason)
    outputs = stack.store.list_keys(
        bucket=stack.settings.artifacts_bucket, prefix=f"predictions/{served.pipeline}/"
    )
    leaked = [key for key in outputs if any(str(r.event_id) in key for r in requests)]
    assert leaked == [], f"predictions written for refused inputs: {leaked}"


async def test_a_pickle_with_a_matching_digest_is_never_loaded(
    stack: Stack, served: Served, pipeline_name: str, tmp_path: Path
) -> None:
    sentinel = tmp_path / "pickle-ran"
    spec = cheap_spec(pipeline_name, realtime=True)
    await asyncio.to_thread(stack.specs.apply, spec)
    location = ObjectLocation(stack.settings.artifacts_bucket, f"runs/{pipeline_name}/run-pickle/model.skops")
    model: ArtifactRef = await asyncio.to_thread(
        stack.store.put, location, pickle.dumps(CodeOnLoad(sentinel))
    )
    real_trained = served.chain[ModelTrained]
    real_approved = served.chain[ModelApproved]
    assert isinstance(real_trained, ModelTrained) and isinstance(real_approved, ModelApproved)
    trained = forged(
        real_trained, model=model, pipeline=pipeline_name, run_id="run-pickle", spec_version=spec.version
    )
    approved = forged(real_approved, model=model, pipeline=pipeline_name, run_id="run-pickle")
    await publish(stack.settings, trained, approved)

    evaluated = await stack.watcher.wait_for(ModelEvaluated, correlation_id=trained.correlation_id)
    assert isinstance(evaluated, ModelEvaluated)
    assert not evaluated.passed and "UntrustedModelError" in (evaluated.failure_reason or ""), evaluated
    failed = await stack.watcher.wait_for(
        DeploymentFailed, ModelDeployed, correlation_id=approved.correlation_id
    )
    # The forged approval is refused before its artifact is even read (shared.approvals).
    assert isinstance(failed, DeploymentFailed) and "ApprovalNotTrusted" in failed.reason, failed
    assert not sentinel.exists(), "a service unpickled the artifact: its code ran"


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.bentoml+pickle",
        "application/python-pickle",
        "application/x-pickle",
        "application/octet-stream",
    ],
)
async def test_an_endpoint_refuses_a_pickle_body(served: Served, media_type: str, tmp_path: Path) -> None:
    sentinel = tmp_path / f"body-ran-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=served.deployed.endpoint_url, timeout=30) as client:
        refused = await client.post(
            "/v1/predict", content=pickle.dumps(CodeOnLoad(sentinel)), headers={"Content-Type": media_type}
        )
        answered = await client.post("/v1/predict", json=feature_row())
    assert 400 <= refused.status_code < 500, (refused.status_code, refused.text)
    assert answered.status_code == 200, answered.text
    assert not sentinel.exists(), "the endpoint unpickled the body: its code ran"
