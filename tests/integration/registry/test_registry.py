"""The registry against a real MinIO: versions, policy, decisions over HTTP, restarts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.registry.api import create_router
from services.registry.journal import Candidate, VersionRegistered
from services.registry.journal_store import JournalStore
from services.registry.registry import Registry
from shared.auth import TokenBook
from shared.events import (
    Event,
    GateResult,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelRejected,
)
from shared.lineage import LineageRecord
from shared.pipeline_spec import PipelineSpec
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore
from shared.uris import ObjectLocation

pytestmark = pytest.mark.infra

TOKENS = TokenBook.from_secret(
    SecretStr(
        '{"approver-token": {"user": "alice", "role": "approver"},'
        ' "viewer-token": {"user": "victor", "role": "reader"},'
        ' "operator-token": {"user": "olga", "role": "operator"}}'
    )
)
APPROVER = {"Authorization": "Bearer approver-token"}


Api = tuple[Registry, httpx.AsyncClient, list[Event]]


def new_pipeline() -> str:
    return f"reg-{uuid.uuid4().hex[:10]}"


def apply_spec(store: ArtifactStore, bucket: str, pipeline: str, *, approval: str) -> PipelineSpec:
    spec = PipelineSpec.from_mapping(
        {"name": pipeline, "target": "target", "task": "classification", "approval": approval}
    )
    SpecStore(store, bucket=bucket).apply(spec)
    return spec


def candidate(
    store: ArtifactStore, bucket: str, spec: PipelineSpec, *, passed: bool = True
) -> ModelEvaluated:
    """A ModelEvaluated whose model and lineage really are in MinIO."""
    run_id = f"run-{uuid.uuid4().hex[:16]}"
    model = store.put(ObjectLocation(bucket, f"{spec.name}/models/{run_id}.skops"), run_id.encode())
    now = datetime.now(UTC)
    record = LineageRecord(
        run_id=run_id,
        pipeline=spec.name,
        dataset_version="d" * 64,
        dataset={},
        spec_version=spec.version,
        spec_uri=f"s3://{bucket}/specs/{spec.name}/{spec.version}.yaml",
        code_version="0.1.0+test",
        estimator=spec.estimator.path,
        search_kind="grid",
        search_space={},
        hyperparameters={"n_estimators": 10},
        cv_metric="accuracy",
        cv_scores=[0.9, 0.92],
        cv_score=0.91,
        seed=42,
        features={"numeric": ["x"], "categorical": []},
        environment={"libraries": {"scikit-learn": "1.9.1"}, "training_image": "conveyor:test"},
        started_at=now,
        finished_at=now,
        training_seconds=0.1,
    )
    lineage = store.put(
        ObjectLocation(bucket, f"{spec.name}/lineage/{run_id}.json"), record.model_dump_json().encode()
    )
    gate = GateResult(gate="accuracy_min", metric="accuracy", passed=passed, value=0.93, threshold=0.95)
    return ModelEvaluated.first(
        producer="test",
        pipeline=spec.name,
        run_id=run_id,
        dataset_version="d" * 64,
        spec_version=spec.version,
        code_version="0.1.0+test",
        model=model,
        lineage=lineage,
        metrics={"accuracy": 0.93},
        gates=[gate],
        passed=passed,
    )


def new_registry(store: ArtifactStore, bucket: str) -> Registry:
    return Registry(
        journal=JournalStore(store, bucket=bucket),
        store=store,
        spec_of=SpecStore(store, bucket=bucket).get,
    )


@pytest.fixture
async def api(
    store: ArtifactStore, bucket: str
) -> AsyncIterator[tuple[Registry, httpx.AsyncClient, list[Event]]]:
    registry = new_registry(store, bucket)
    await registry.load()
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    app = FastAPI()
    app.include_router(create_router(registry, tokens=TOKENS, publish=publish))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry"
    ) as client:
        yield registry, client, published


async def test_auto_policy_approves_and_a_redelivered_candidate_is_not_registered_twice(
    store: ArtifactStore, bucket: str
) -> None:
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")
    registry = new_registry(store, bucket)
    await registry.load()
    evaluated = candidate(store, bucket, spec)

    first = await registry.register(evaluated)
    again = await registry.register(evaluated)

    assert [type(e) for e in first] == [ModelRegistered, ModelApproved]
    # Same facts, same event ids: consumers see a repeat, not a new version.
    assert [e.model_dump(exclude={"occurred_at"}) for e in first] == [
        e.model_dump(exclude={"occurred_at"}) for e in again
    ]
    registered, approved = first
    assert isinstance(registered, ModelRegistered) and registered.version == 1
    assert registered.status == "Approved"
    assert isinstance(approved, ModelApproved)
    assert approved.model == evaluated.model
    assert approved.lineage.hyperparameters == {"n_estimators": 10}
    assert approved.lineage.training_image == "conveyor:test"
    assert approved.correlation_id == evaluated.correlation_id
    assert approved.causation_id == evaluated.event_id
    assert len(registry.group(spec.name).versions) == 1

    # The same run reached again by a later arrival (the same bytes): no new version, and the
    # decision is reported in the later arrival's chain so whoever follows it sees it complete.
    later = evaluated.model_copy(update={"event_id": uuid.uuid4(), "correlation_id": uuid.uuid4()})
    repeat = await registry.register(later)
    assert [e.version for e in repeat] == [1, 1]  # type: ignore[attr-defined]
    assert all(e.correlation_id == later.correlation_id for e in repeat)
    assert repeat[1].event_id != approved.event_id

    second = await registry.register(candidate(store, bucket, spec))
    assert isinstance(second[0], ModelRegistered) and second[0].version == 2


async def test_failed_gates_reject_whatever_the_policy(store: ArtifactStore, bucket: str) -> None:
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")
    registry = new_registry(store, bucket)
    await registry.load()
    events = await registry.register(candidate(store, bucket, spec, passed=False))
    assert [type(e) for e in events] == [ModelRegistered, ModelRejected]
    rejected = events[1]
    assert isinstance(rejected, ModelRejected) and rejected.rejected_by == "quality-gates"


async def test_manual_approval_needs_an_approver_token_and_only_pending_versions_change(
    store: ArtifactStore, bucket: str, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.audit")
    registry, client, published = api
    spec = apply_spec(store, bucket, new_pipeline(), approval="manual")
    events = await registry.register(candidate(store, bucket, spec))
    assert [type(e) for e in events] == [ModelRegistered]
    path = f"/v1/groups/{spec.name}/versions/1"

    pending = await client.get(f"/v1/groups/{spec.name}/versions", params={"status": "PendingManualApproval"})
    assert [v["version"] for v in pending.json()] == [1]

    no_token = await client.post(f"{path}/approve", json={"comment": "ship it"})
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    bad_token = await client.post(f"{path}/approve", json={}, headers={"Authorization": "Bearer nope"})
    assert bad_token.status_code == 401
    viewer = await client.post(f"{path}/approve", json={}, headers={"Authorization": "Bearer viewer-token"})
    assert viewer.status_code == 403
    operator = await client.post(
        f"{path}/reject", json={}, headers={"Authorization": "Bearer operator-token"}
    )
    assert operator.status_code == 403 and "lacks the 'approver' role" in operator.text
    assert published == []

    approved = await client.post(f"{path}/approve", json={"comment": "ship it"}, headers=APPROVER)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "Approved"
    assert body["audit"][-1]["by"] == "alice" and body["audit"][-1]["comment"] == "ship it"
    audits = [record.audit for record in caplog.records if hasattr(record, "audit")]
    done = {"user": "alice", "action": "approve", "why": "ship it", "outcome": "done"}
    assert any(done.items() <= entry.items() for entry in audits), audits
    assert any(entry["user"] is None and entry["outcome"].startswith("refused") for entry in audits)
    assert any(entry["user"] == "olga" and "approver" in entry["outcome"] for entry in audits)
    assert not [t for t in ("approver-token", "operator-token", "viewer-token") if t in caplog.text]
    assert len(published) == 1 and isinstance(published[0], ModelApproved)
    assert published[0].approved_by == "alice"

    again = await client.post(f"{path}/approve", json={}, headers=APPROVER)
    assert again.status_code == 409 and "it is Approved" in again.json()["detail"]
    reject_approved = await client.post(f"{path}/reject", json={}, headers=APPROVER)
    assert reject_approved.status_code == 409

    await registry.register(candidate(store, bucket, spec))
    rejected = await client.post(
        f"/v1/groups/{spec.name}/versions/2/reject", json={"comment": "biased"}, headers=APPROVER
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "Rejected"
    approve_rejected = await client.post(
        f"/v1/groups/{spec.name}/versions/2/approve", json={}, headers=APPROVER
    )
    assert approve_rejected.status_code == 409
    assert isinstance(published[-1], ModelRejected)

    missing = await client.post(f"/v1/groups/{spec.name}/versions/9/approve", json={}, headers=APPROVER)
    assert missing.status_code == 404
    assert (await client.get("/v1/groups/no-such-group")).status_code == 404
    assert (await client.get("/v1/groups/..%2fetc")).status_code in (404, 422)


async def test_state_survives_a_restart_and_an_interrupted_registration_is_completed(
    store: ArtifactStore, bucket: str
) -> None:
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")
    registry = new_registry(store, bucket)
    await registry.load()
    first = candidate(store, bucket, spec)
    await registry.register(first)

    # A crash after the version was written but before the policy was applied.
    interrupted = candidate(store, bucket, spec)
    group = registry.group(spec.name)
    summary = group.versions[1].registered.candidate.lineage_summary
    entry = VersionRegistered(
        at=datetime.now(UTC),
        version=2,
        candidate=Candidate.from_event(interrupted, lineage_summary=summary),
        approval="auto",
        deployment=spec.deployment.target,
    )
    JournalStore(store, bucket=bucket).append(group, entry)

    restarted = new_registry(store, bucket)
    await restarted.load()
    assert restarted.group(spec.name).versions[2].status == "PendingManualApproval"
    events = await restarted.register(interrupted)  # the redelivery
    assert isinstance(events[0], ModelRegistered) and events[0].version == 2
    assert isinstance(events[1], ModelApproved)

    after = new_registry(store, bucket)
    await after.load()
    versions = after.group(spec.name).versions
    assert sorted(versions) == [1, 2]
    assert [v.status for v in versions.values()] == ["Approved", "Approved"]


async def test_deployments_make_the_promotion_history(store: ArtifactStore, bucket: str, api: Api) -> None:
    registry, client, _ = api
    spec = apply_spec(store, bucket, new_pipeline(), approval="auto")
    first = candidate(store, bucket, spec)
    await registry.register(first)
    await registry.register(candidate(store, bucket, spec))

    def deployed(version: int) -> ModelDeployed:
        return ModelDeployed.caused_by(
            first,
            producer="deploy",
            version=version,
            endpoint_url="http://127.0.0.1:3000",
            environment="local",
        ).model_copy(update={"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC)})

    await registry.record_deployment(deployed(1))
    between = datetime.now(UTC)
    await registry.record_deployment(deployed(2))
    await registry.record_deployment(deployed(2))  # redelivered: no new history line

    history = (await client.get(f"/v1/groups/{spec.name}/history", params={"environment": "local"})).json()
    assert [(h["version"], h["until"] is None) for h in history] == [(1, False), (2, True)]
    then = await client.get(f"/v1/groups/{spec.name}/history", params={"at": between.isoformat()})
    assert [h["version"] for h in then.json()] == [1]
    group = (await client.get(f"/v1/groups/{spec.name}")).json()
    assert group["live"] == {"local": 2} and group["champion_version"] == 2
    detail = (await client.get(f"/v1/groups/{spec.name}/versions/1")).json()
    assert detail["deployments"][0]["environment"] == "local"
    assert detail["lineage"]["spec_version"] == spec.version
