"""Governed dataset checkout against a real MinIO: datasets stored by ingest's own code, lent out
by the registry (in process for the API's rules, as a process for the CLI)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sklearn.datasets import load_iris

from services.ingest.datasets import DatasetIndex
from services.ingest.ingestion import IngestPorts, ingest
from services.registry.datasets import DatasetCatalog
from services.registry.datasets_api import create_dataset_router
from shared import topics
from shared.auth import TokenBook
from shared.pipeline_spec import PipelineSpec
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, IntegrityError, sha256_hex
from shared.uris import AllowedLocation, ObjectLocation
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import ServiceProcess, free_port

pytestmark = pytest.mark.infra

TOKENS = (
    '{"reader-token": {"user": "dana", "role": "reader"},'
    ' "approver-token": {"user": "alice", "role": "approver"}}'
)
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def csv_bytes(rows: int, *, seed: int) -> bytes:
    frame = load_iris(as_frame=True).frame.sample(rows, random_state=seed)
    return frame.to_csv(index=False).encode()


def ingested(store: ArtifactStore, bucket: str, pipeline: str, data: bytes) -> str:
    """Ingest ``data`` for ``pipeline`` with ingest's own work function; its dataset version."""
    location = ObjectLocation(bucket, f"landing/{pipeline}/{uuid.uuid4().hex}.csv")
    store.put(location, data)
    ports = IngestPorts(
        store=store,
        specs=SpecStore(store, bucket=bucket),
        datasets=DatasetIndex(store, bucket=bucket),
        landing=AllowedLocation(bucket, "landing/"),
    )
    outcome = ingest(ports, pipeline=pipeline, uri=location.uri, fmt="csv")
    assert outcome.accepted, outcome
    return sha256_hex(data)


@pytest.fixture
def pipeline(store: ArtifactStore, bucket: str) -> str:
    name = f"ds-{uuid.uuid4().hex[:10]}"
    spec = PipelineSpec.from_mapping({"name": name, "target": "target", "task": "classification"})
    SpecStore(store, bucket=bucket).apply(spec)
    return name


@pytest.fixture
async def client(store: ArtifactStore, bucket: str) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    tokens = TokenBook.from_secret(SecretStr(TOKENS))
    app.include_router(create_dataset_router(DatasetCatalog(store, bucket=bucket), tokens=tokens))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry"
    ) as client:
        yield client


def reader(token: str = "reader-token") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_checkout_is_the_exact_version_and_is_audited(
    client: httpx.AsyncClient, store: ArtifactStore, bucket: str, pipeline: str
) -> None:
    first_bytes, second_bytes = csv_bytes(120, seed=1), csv_bytes(140, seed=2)
    first = ingested(store, bucket, pipeline, first_bytes)
    second = ingested(store, bucket, pipeline, second_bytes)

    assert (await client.get(f"/v1/datasets/{pipeline}/versions")).status_code == 401
    bad = await client.post(f"/v1/datasets/{pipeline}/checkout", json={"reason": "x"}, headers=reader("nope"))
    assert bad.status_code == 401
    listed = (await client.get(f"/v1/datasets/{pipeline}/versions", headers=reader())).json()
    assert sorted(v["dataset_version"] for v in listed) == sorted([first, second])
    assert [v["dataset_version"] for v in listed if v["latest"]] == [second]

    older = await client.post(
        f"/v1/datasets/{pipeline}/checkout",
        json={"dataset_version": first, "reason": "audit Q3"},
        headers=reader(),
    )
    assert older.status_code == 200 and older.content == first_bytes
    assert older.headers["X-Conveyor-Sha256"] == first == sha256_hex(older.content)
    latest = await client.post(
        f"/v1/datasets/{pipeline}/checkout", json={"reason": "retrain"}, headers=reader("approver-token")
    )
    assert latest.content == second_bytes
    unknown = await client.post(
        f"/v1/datasets/{pipeline}/checkout",
        json={"dataset_version": "0" * 64, "reason": "x"},
        headers=reader(),
    )
    assert unknown.status_code == 404
    no_reason = await client.post(f"/v1/datasets/{pipeline}/checkout", json={"reason": ""}, headers=reader())
    assert no_reason.status_code == 422

    audit = (await client.get(f"/v1/datasets/{pipeline}/audit", headers=reader())).json()
    assert [(a["user"], a["role"], a["dataset_version"], a["reason"]) for a in audit] == [
        ("dana", "reader", first, "audit Q3"),
        ("alice", "approver", second, "retrain"),
    ]
    assert audit[0]["checkout_id"] == older.headers["X-Conveyor-Checkout-Id"]
    # The audit is MinIO's: a new registry (any replica, any restart) reads the same entries.
    again = DatasetCatalog(store, bucket=bucket).audit(pipeline)
    assert [str(a.checkout_id) for a in again] == [a["checkout_id"] for a in audit]
    one = (
        await client.get(
            f"/v1/datasets/{pipeline}/audit", params={"dataset_version": first}, headers=reader()
        )
    ).json()
    assert [a["reason"] for a in one] == ["audit Q3"]


async def test_a_tampered_dataset_is_not_handed_out_as_its_version(
    client: httpx.AsyncClient, store: ArtifactStore, bucket: str, pipeline: str
) -> None:
    version = ingested(store, bucket, pipeline, csv_bytes(120, seed=3))
    raw = next(
        v for v in DatasetCatalog(store, bucket=bucket).versions(pipeline) if v.dataset_version == version
    )
    location = store.locate(raw.uri)
    store._client.put_object(bucket, location.key, io.BytesIO(b"x,y\n1,2\n"), 8)  # behind the platform's back
    # The stream breaks before its end (in-process, the error itself arrives): no complete wrong file.
    with pytest.raises((httpx.HTTPError, IntegrityError)):
        await client.post(f"/v1/datasets/{pipeline}/checkout", json={"reason": "r"}, headers=reader())


def conveyor(
    settings: Settings, *args: str, token: str = "reader-token", cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONVEYOR_REGISTRY_PORT": str(settings.registry_port), "CONVEYOR_API_TOKEN": token}
    return subprocess.run(
        [CONVEYOR, "--json", *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd
    )


async def test_the_cli_lists_checks_out_and_audits(
    settings: Settings, store: ArtifactStore, bucket: str, pipeline: str, tmp_path: Path
) -> None:
    data = csv_bytes(120, seed=4)
    version = ingested(store, bucket, pipeline, data)
    tag = uuid.uuid4().hex[:10]
    registry_settings = settings.model_copy(update={"registry_port": free_port()})
    await start_group_at_end(
        settings, group_id=f"test-{tag}-registry", topics=[topics.MODEL_EVALUATED, topics.MODEL_DEPLOYED]
    )
    env = {
        "CONVEYOR_CONSUMER_GROUP_PREFIX": f"test-{tag}",
        "CONVEYOR_ARTIFACTS_BUCKET": bucket,
        "CONVEYOR_REGISTRY_PORT": str(registry_settings.registry_port),
        "CONVEYOR_API_TOKENS": TOKENS,
    }
    ready = f"{registry_settings.registry_base_url}/health/ready"
    registry = ServiceProcess("registry", env=env, log_dir=tmp_path, ready_url=ready)
    try:
        await asyncio.to_thread(registry.start)
        listed = conveyor(registry_settings, "data", "versions", pipeline, cwd=tmp_path)
        assert [v["dataset_version"] for v in json.loads(listed.stdout)] == [version], listed.stderr
        done = conveyor(
            registry_settings, "data", "checkout", pipeline, version, "--reason", "paper", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert (tmp_path / json.loads(done.stdout)["path"]).read_bytes() == data  # relative to its cwd
        refused = conveyor(
            registry_settings, "data", "checkout", pipeline, "--reason", "x", token="wrong", cwd=tmp_path
        )
        assert refused.returncode != 0 and "HTTP 401" in refused.stderr + refused.stdout

        registry.stop()
        await asyncio.to_thread(registry.start)
        audit = conveyor(registry_settings, "data", "audit", pipeline, cwd=tmp_path)
        assert [(a["user"], a["reason"]) for a in json.loads(audit.stdout)] == [("dana", "paper")], (
            audit.stderr
        )
    finally:
        registry.stop()
