"""Promotion across environments in the registry, against a real MinIO: roles, order, auto policy, history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.registry.api import create_router
from services.registry.registry import Registry
from shared.auth import TokenBook
from shared.events import (
    Event,
    ModelApproved,
    ModelDeployed,
    ModelPromoted,
    ReleaseRolledBack,
    ReleaseStarted,
    ReleaseStepChecked,
    ReleaseWindow,
    VersionFigures,
)
from shared.events.serving import ServingRuntime
from shared.pipeline_spec import PipelineSpec
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore
from tests.integration.registry.test_registry import candidate, new_registry

pytestmark = pytest.mark.infra

TOKENS = TokenBook.from_secret(
    SecretStr(
        '{"approver-token": {"user": "alice", "role": "approver"},'
        ' "release-token": {"user": "rita", "role": "release"},'
        ' "admin-token": {"user": "root", "role": "admin"}}'
    )
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def staged_spec(store: ArtifactStore, bucket: str, *, production: str = "manual") -> PipelineSpec:
    spec = PipelineSpec.from_mapping(
        {
            "name": f"env-{uuid.uuid4().hex[:10]}",
            "target": "target",
            "task": "classification",
            "environments": [
                {"name": "staging", "approval": "auto"},
                {"name": "production", "approval": production, "role": "release"},
            ],
        }
    )
    SpecStore(store, bucket=bucket).apply(spec)
    return spec


def deployed(approved: ModelApproved | ModelPromoted, environment: str) -> ModelDeployed:
    return ModelDeployed.caused_by(
        approved,
        producer="deploy",
        version=approved.version,
        endpoint_url=f"http://{environment}.example:3000",
        environment=environment,
        runtime=ServingRuntime(name="onnxruntime", reason=f"proven equal in {environment}"),
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


async def test_a_version_reaches_production_only_by_promotion_with_the_production_role(
    api: tuple[Registry, httpx.AsyncClient, list[Event]], store: ArtifactStore, bucket: str
) -> None:
    registry, client, published = api
    spec = staged_spec(store, bucket)
    first = await registry.register(candidate(store, bucket, spec))
    second = await registry.register(candidate(store, bucket, spec))
    approved = next(e for e in first if isinstance(e, ModelApproved))
    assert approved.environment == "staging"
    assert [e.environment for e in second if isinstance(e, ModelApproved)] == ["staging"]
    url = f"/v1/groups/{spec.name}/versions/1/promote"
    body = {"to": "production", "comment": "green in staging"}

    # Never served in staging: refused, whoever asks.
    refused = await client.post(url, json=body, headers=bearer("release-token"))
    assert refused.status_code == 409, refused.text
    assert "never served in staging" in refused.json()["detail"]

    assert await registry.record_deployment(deployed(approved, "staging")) == []  # production is manual
    before_promotion = datetime.now(UTC)
    assert (await client.post(url, json=body)).status_code == 401
    wrong_role = await client.post(url, json=body, headers=bearer("approver-token"))
    assert wrong_role.status_code == 403
    assert "'release' role" in wrong_role.json()["detail"]
    unknown = await client.post(url, json={"to": "qa"}, headers=bearer("release-token"))
    assert unknown.status_code == 404
    first_env = await client.post(url, json={"to": "staging"}, headers=bearer("admin-token"))
    assert first_env.status_code == 409

    promoted = await client.post(url, json=body, headers=bearer("release-token"))
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["eligible"] == ["staging", "production"]
    # The version's record leads to who checked out the data it was trained on.
    assert promoted.json()["dataset_audit"] == f"/v1/datasets/{spec.name}/audit?dataset_version={'d' * 64}"
    assert promoted.json()["audit"][-1] | {"at": None} == {
        "action": "promoted to production",
        "by": "rita",
        "at": None,
        "comment": "green in staging",
    }
    event = published[-1]
    assert isinstance(event, ModelPromoted)
    assert (event.version, event.environment, event.from_environment, event.promoted_by) == (
        1,
        "production",
        "staging",
        "rita",
    )
    assert event.correlation_id == approved.correlation_id and event.model == approved.model
    again = await client.post(url, json=body, headers=bearer("admin-token"))
    assert again.status_code == 409  # already there

    await registry.record_deployment(deployed(event, "production"))
    history = f"/v1/groups/{spec.name}/history"
    then = (
        await client.get(history, params={"environment": "production", "at": before_promotion.isoformat()})
    ).json()
    now = (
        await client.get(history, params={"environment": "production", "at": datetime.now(UTC).isoformat()})
    ).json()
    assert then == [] and [r["version"] for r in now] == [1]
    assert (now[0]["runtime"], now[0]["runtime_reason"]) == ("onnxruntime", "proven equal in production")

    # The journal holds the promotion: a restarted registry knows it.
    restarted = new_registry(store, bucket)
    await restarted.load()
    assert restarted.group(spec.name).versions[1].eligible == ["staging", "production"]


async def test_an_auto_environment_follows_the_one_before_once(store: ArtifactStore, bucket: str) -> None:
    spec = staged_spec(store, bucket, production="auto")
    registry = new_registry(store, bucket)
    await registry.load()
    approved = next(
        e for e in await registry.register(candidate(store, bucket, spec)) if isinstance(e, ModelApproved)
    )
    fact = deployed(approved, "staging")

    promoted = await registry.record_deployment(fact)
    redelivered = await registry.record_deployment(fact)
    assert [type(e) for e in promoted] == [ModelPromoted]
    assert redelivered == promoted  # the same event id again, nothing new in the journal
    assert promoted[0].promoted_by == "policy:auto" and promoted[0].environment == "production"
    assert registry.group(spec.name).versions[1].audit[-1].action == "promoted to production"
    assert await registry.record_deployment(deployed(promoted[0], "production")) == []  # the last one


async def test_each_step_of_a_release_is_in_the_history_of_its_environment_once(
    api: tuple[Registry, httpx.AsyncClient, list[Event]], store: ArtifactStore, bucket: str
) -> None:
    registry, client, _ = api
    spec = staged_spec(store, bucket)
    await registry.register(candidate(store, bucket, spec))
    approved = next(
        e for e in await registry.register(candidate(store, bucket, spec)) if isinstance(e, ModelApproved)
    )
    common = {"producer": "deploy", "version": 2, "baseline_version": 1, "environment": "staging",
              "strategy": "canary"}  # fmt: skip
    window = ReleaseWindow(
        step=1,
        share=10.0,
        seconds=60.0,
        candidate=VersionFigures(version=2, requests=60, errors=6, error_rate=0.1),
        baseline=VersionFigures(version=1, requests=540, errors=0, error_rate=0.0),
        breaches=["server errors: 6 of 60 requests (10.00%) against 0.00% for version 1"],
    )
    steps: list[Event] = [
        ReleaseStarted.caused_by(approved, **common, shares=[10.0, 10.0]),
        ReleaseStepChecked.caused_by(approved, **common, window=window, passed=False),
        ReleaseRolledBack.caused_by(
            approved, **common, by="guardrails", reason=window.breaches[0], window=window
        ),
    ]
    for step in [*steps, steps[1]]:  # the window's event delivered twice
        assert await registry.record_release(step) == []

    releases = (
        await client.get(f"/v1/groups/{spec.name}/releases", params={"environment": "staging"})
    ).json()
    assert [(r["transition"], r["by"], r["version"]) for r in releases] == [
        ("started", "deploy", 2),
        ("step_checked", "guardrails", 2),
        ("rolled_back", "guardrails", 2),
    ]
    assert releases[1]["detail"].startswith("window 1 at 10%: server errors: 6 of 60")
    assert (
        await client.get(f"/v1/groups/{spec.name}/releases", params={"environment": "production"})
    ).json() == []
    detail = (await client.get(f"/v1/groups/{spec.name}/versions/2")).json()
    assert [a["action"] for a in detail["audit"]][-2:] == [
        "release started in staging",
        "release rolled back in staging",
    ]

    restarted = new_registry(store, bucket)  # the journal holds the release
    await restarted.load()
    assert [r.transition for r in restarted.group(spec.name).releases] == [
        "started",
        "step_checked",
        "rolled_back",
    ]
