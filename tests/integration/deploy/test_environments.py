"""Staging, then production: two deploy services on one machine, the registry between them, all processes.

A version reaches staging when approved, and production only when a token with the production
role promotes it (the CLI, through the registry's API); another role gets 403, a version that
never served in staging 409.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from services.deploy.app import service_name
from services.deploy.settings import DeploySettings
from shared import topics
from shared.clients.events import EventWatcher
from shared.clients.serving import PredictionClient
from shared.events import ALL_EVENTS, ArtifactRef, ModelDeployed, ModelEvaluated, ModelPromoted
from shared.messaging import ensure_topics
from shared.pipeline_spec import PipelineSpec
from shared.settings import Settings
from shared.storage import ArtifactStore, minio_client, sha256_hex
from tests.integration.deploy.conftest import _remove_buckets
from tests.integration.deploy.fixtures import (
    TARGET,
    dataset,
    fit_model,
    model_artifact,
    publish,
    store_training_outputs,
)
from tests.integration.deploy.service_process import DeployProcess, cleanup, wait_gone
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import ServiceProcess, free_port, free_port_range

pytestmark = pytest.mark.infra

TOKENS = (
    '{"approver-token": {"user": "alice", "role": "approver"},'
    ' "release-token": {"user": "rita", "role": "release"}}'
)
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


@dataclass
class Environments:
    """The registry and one deploy service per environment, with what watches them."""

    settings: Settings
    registry: ServiceProcess
    deploys: dict[str, DeployProcess]
    watcher: EventWatcher
    store: ArtifactStore


@pytest.fixture(scope="module")
async def environments(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Environments]:
    tag = uuid.uuid4().hex[:10]
    base = settings.model_copy(
        update={
            "consumer_group_prefix": f"test-{tag}",
            "artifacts_bucket": f"env-art-{tag}",
            "landing_bucket": f"env-land-{tag}",
            "registry_port": free_port(),
            "api_tokens": SecretStr(TOKENS),
        }
    )
    store = ArtifactStore.from_settings(base)
    store.ensure_buckets()
    await ensure_topics(base, [event.topic for event in ALL_EVENTS])
    await start_group_at_end(
        base, group_id=f"test-{tag}-registry", topics=[topics.MODEL_EVALUATED, topics.MODEL_DEPLOYED]
    )
    registry = ServiceProcess(
        "registry",
        env={
            "CONVEYOR_CONSUMER_GROUP_PREFIX": base.consumer_group_prefix,
            "CONVEYOR_ARTIFACTS_BUCKET": base.artifacts_bucket,
            "CONVEYOR_LANDING_BUCKET": base.landing_bucket,
            "CONVEYOR_REGISTRY_PORT": str(base.registry_port),
            "CONVEYOR_API_TOKENS": TOKENS,
        },
        log_dir=tmp_path_factory.mktemp("registry-log"),
        ready_url=f"{base.registry_base_url}/health/ready",
    )
    watcher = EventWatcher(base, [topics.MODEL_APPROVED, topics.MODEL_PROMOTED, topics.MODEL_DEPLOYED])
    await watcher.start()
    deploys: dict[str, DeployProcess] = {}
    try:
        await asyncio.to_thread(registry.start)
        for environment in ("staging", "production"):
            deploy_settings = DeploySettings(**base.model_dump()).model_copy(
                update={
                    "environment": environment,
                    "state_dir": tmp_path_factory.mktemp(f"deploy-{environment}"),
                    "deploy_port": free_port(),
                    "serving_port_base": free_port_range(4, low=21000, high=29000),
                    "serving_port_count": 4,
                }
            )
            group = f"{base.consumer_group_prefix}-{service_name(environment)}"
            await start_group_at_end(
                base, group_id=group, topics=[topics.MODEL_APPROVED, topics.MODEL_PROMOTED]
            )
            deploys[environment] = DeployProcess(deploy_settings)
            await deploys[environment].start()
        yield Environments(base, registry, deploys, watcher, store)
    finally:
        for deploy in deploys.values():
            await deploy.stop()
            left = await wait_gone(deploy.tag(), timeout=30)
            cleanup(deploy.tag())
            assert not left, f"processes left after the {deploy.settings.environment} deploy service stopped"
        registry.stop()
        await watcher.stop()
        _remove_buckets(minio_client(base), store.buckets)


def staged_spec(name: str) -> PipelineSpec:
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": TARGET,
            "task": "classification",
            "estimator": {"path": "sklearn.linear_model.LogisticRegression"},
            "environments": [
                {"name": "staging", "approval": "auto"},
                {"name": "production", "approval": "manual", "role": "release"},
            ],
        }
    )


def evaluated(
    store: ArtifactStore, bucket: str, spec: PipelineSpec, *, version: int, passed: bool
) -> ModelEvaluated:
    """The ModelEvaluated evaluate would publish for a real fitted model stored as training stores it."""
    data = dataset()
    published = store_training_outputs(
        store, bucket=bucket, spec=spec, data=data, artifact=model_artifact(fit_model(data)), version=version
    )
    lineage_bytes = store.get_verified(store.locate(published.lineage_uri))
    lineage = ArtifactRef(
        uri=published.lineage_uri, sha256=sha256_hex(lineage_bytes), size_bytes=len(lineage_bytes)
    )
    return ModelEvaluated.first(
        producer="test",
        pipeline=spec.name,
        run_id=f"run-test-{version}",
        dataset_version="0" * 64,
        spec_version=spec.version,
        code_version="test",
        model=published.model,
        lineage=lineage,
        metrics={"f1_macro": 0.95 if passed else 0.2},
        passed=passed,
    )


def conveyor(
    env: Environments, *args: str, token: str = "approver-token"
) -> subprocess.CompletedProcess[str]:
    """The ``conveyor`` command as a user runs it, pointed at this test's registry."""
    return subprocess.run(
        [CONVEYOR, *args],
        env={
            **os.environ,
            "CONVEYOR_REGISTRY_PORT": str(env.settings.registry_port),
            "CONVEYOR_API_TOKEN": token,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def promote(
    env: Environments, pipeline: str, version: int, *, token: str
) -> subprocess.CompletedProcess[str]:
    """``conveyor models promote`` to production."""
    return conveyor(
        env, "models", "promote", pipeline, str(version), "--to", "production", "--comment", "ok", token=token
    )


async def test_staging_on_approval_production_only_by_promotion(
    environments: Environments, kafka_producer: AIOKafkaProducer
) -> None:
    env = environments
    spec = staged_spec(f"stg-{uuid.uuid4().hex[:8]}")
    bucket = env.settings.artifacts_bucket
    await publish(kafka_producer, evaluated(env.store, bucket, spec, version=1, passed=True))
    staged = await env.watcher.wait_until(
        ModelDeployed, pipeline=spec.name, where=lambda e: e.environment == "staging", timeout=120
    )
    assert staged[0].version == 1
    await publish(kafka_producer, evaluated(env.store, bucket, spec, version=2, passed=False))  # rejected

    async with httpx.AsyncClient(base_url=env.settings.registry_base_url, timeout=10) as registry:
        history = f"/v1/groups/{spec.name}/history"
        while not (await registry.get(history, params={"environment": "staging"})).json():
            await asyncio.sleep(0.1)  # the registry records the staging deployment
        while len((await registry.get(f"/v1/groups/{spec.name}/versions")).json()) < 2:
            await asyncio.sleep(0.1)

        other_role = promote(env, spec.name, 1, token="approver-token")
        never_staged = promote(env, spec.name, 2, token="release-token")
        assert other_role.returncode != 0 and "HTTP 403" in other_role.stderr + other_role.stdout
        assert never_staged.returncode != 0 and "HTTP 409" in never_staged.stderr + never_staged.stdout
        assert env.watcher.of(ModelPromoted, pipeline=spec.name) == []

        promoted_at = datetime.now(UTC)
        done = promote(env, spec.name, 1, token="release-token")
        assert done.returncode == 0, done.stderr + done.stdout
        live = await env.watcher.wait_until(
            ModelDeployed, pipeline=spec.name, where=lambda e: e.environment == "production", timeout=120
        )
        assert live[0].version == 1 and live[0].occurred_at > promoted_at
        promotion = env.watcher.of(ModelPromoted, pipeline=spec.name)
        assert [(p.version, p.promoted_by, p.from_environment) for p in promotion] == [(1, "rita", "staging")]
        assert live[0].causation_id == promotion[0].event_id

        while not (await registry.get(history, params={"environment": "production"})).json():
            await asyncio.sleep(0.1)
        shown = conveyor(env, "--json", "models", "history", spec.name, "--at", promoted_at.isoformat())
        before = json.loads(shown.stdout)
        after = (await registry.get(history, params={"at": datetime.now(UTC).isoformat()})).json()
    assert [(r["environment"], r["version"]) for r in before] == [("staging", 1)]
    assert sorted((r["environment"], r["version"]) for r in after) == [("production", 1), ("staging", 1)]

    # Two endpoints, one per environment, both serving version 1.
    assert staged[0].endpoint_url != live[0].endpoint_url
    rows = dataset().rows(dataset().test)[:5]
    for endpoint in (staged[0].endpoint_url, live[0].endpoint_url):
        with PredictionClient(endpoint) as client:
            answer = await asyncio.to_thread(client.predict, rows)
        assert answer.version == 1 and len(answer.predictions) == 5
