"""Least privilege in MinIO, on the real server: each service its own user, writing only its prefixes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error
from pydantic import SecretStr

from infra.minio_users import environment_names, provision_users
from services.deploy.rollout import server_environment
from services.deploy.settings import DeploySettings
from shared.access import WRITES, WrongCredentials, check_own_access
from shared.approvals import PRIVATE_KEY, PUBLIC_KEY, ApprovalSigner
from shared.secrets import ServiceKeys, new_service_keys
from shared.settings import Settings
from shared.storage import ArtifactStore, BucketMissingError, minio_client

pytestmark = pytest.mark.infra
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scoped(settings: Settings) -> Iterator[Settings]:
    """Root settings over buckets of this module's own (removed afterwards)."""
    tag = uuid.uuid4().hex[:10]
    scoped = settings.model_copy(
        update={"artifacts_bucket": f"lp-art-{tag}", "landing_bucket": f"lp-land-{tag}"}
    )
    yield scoped
    client = minio_client(scoped)
    for bucket in (scoped.artifacts_bucket, scoped.landing_bucket):
        if client.bucket_exists(bucket):
            for obj in client.list_objects(bucket, recursive=True):
                if obj.object_name is not None:
                    client.remove_object(bucket, obj.object_name)
            client.remove_bucket(bucket)


@pytest.fixture(scope="module")
def users(scoped: Settings) -> dict[str, ServiceKeys]:
    """Every service's user, provisioned through MinIO's admin API as `conveyor up` does."""
    return provision_users(scoped)


def as_service(settings: Settings, keys: ServiceKeys) -> Settings:
    return settings.model_copy(
        update={"minio_access_key": keys.access_key, "minio_secret_key": keys.secret_key}
    )


def write(client: Minio, bucket: str, key: str, data: bytes = b"x") -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def denied(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except S3Error as error:
        return error.code == "AccessDenied"
    return False


def test_provisioning_is_idempotent_and_keeps_the_keys(
    scoped: Settings, users: dict[str, ServiceKeys]
) -> None:
    assert set(users) == set(WRITES)
    assert provision_users(scoped, known=users) == users


@pytest.mark.parametrize("service", sorted(WRITES))
def test_each_service_writes_only_under_its_own_prefixes(
    scoped: Settings, users: dict[str, ServiceKeys], service: str
) -> None:
    client = minio_client(as_service(scoped, users[service]))
    bucket = scoped.artifacts_bucket
    for owner, prefixes in WRITES.items():
        for prefix in prefixes:
            key = f"{prefix}probe/{uuid.uuid4().hex}"
            if owner == service:
                write(client, bucket, key)
                client.remove_object(bucket, key)
            else:
                assert denied(lambda key=key: write(client, bucket, key)), f"{service} wrote {key}"
    assert denied(lambda: write(client, bucket, "specs/x/current.json")), "specs are the operator's"
    assert denied(lambda: write(client, scoped.landing_bucket, "x/data.csv")), "landing is the publisher's"
    assert denied(lambda: client.make_bucket(f"lp-new-{uuid.uuid4().hex[:8]}"))


def test_ingest_cannot_overwrite_or_delete_the_registry_journal(
    scoped: Settings, users: dict[str, ServiceKeys]
) -> None:
    journal_key = f"registry/lp/journal/{0:010d}.json"
    write(minio_client(as_service(scoped, users["registry"])), scoped.artifacts_bucket, journal_key, b"{}")
    ingest = minio_client(as_service(scoped, users["ingest"]))
    assert denied(lambda: write(ingest, scoped.artifacts_bucket, journal_key, b'{"forged": true}'))
    assert denied(lambda: ingest.remove_object(scoped.artifacts_bucket, journal_key))
    body = minio_client(scoped).get_object(scoped.artifacts_bucket, journal_key)
    assert body.read() == b"{}"  # nothing changed; every service may still read it
    body.close()


def test_only_the_registry_reads_its_signing_key(scoped: Settings, users: dict[str, ServiceKeys]) -> None:
    registry = as_service(scoped, users["registry"])
    ApprovalSigner(ArtifactStore.from_settings(registry), bucket=scoped.artifacts_bucket).load()
    for service in sorted(set(WRITES) - {"registry"}):
        client = minio_client(as_service(scoped, users[service]))
        assert denied(lambda client=client: client.get_object(scoped.artifacts_bucket, PRIVATE_KEY)), service
        client.get_object(scoped.artifacts_bucket, PUBLIC_KEY).close()  # the public half is everyone's


def test_deploy_reads_models_but_cannot_write_them_and_servers_get_no_keys(
    scoped: Settings, users: dict[str, ServiceKeys], tmp_path: Path
) -> None:
    model_key = "runs/lp/run-1/model.skops"
    write(minio_client(as_service(scoped, users["train"])), scoped.artifacts_bucket, model_key, b"model")
    deploy = minio_client(as_service(scoped, users["deploy"]))
    response = deploy.get_object(scoped.artifacts_bucket, model_key)
    assert response.read() == b"model"
    response.close()
    assert denied(lambda: write(deploy, scoped.artifacts_bucket, model_key, b"swapped"))
    # The BentoML servers read their model from the local BentoML store: no MinIO keys at all.
    env = server_environment(
        DeploySettings(**{**as_service(scoped, users["deploy"]).model_dump(), "state_dir": tmp_path})
    )
    assert not {"CONVEYOR_MINIO_ACCESS_KEY", "CONVEYOR_MINIO_SECRET_KEY"} & set(env)


@pytest.mark.parametrize(
    ("service", "borrowed"), [("registry", "ingest"), ("deploy", "train"), ("ingest", "deploy")]
)
def test_a_service_holding_another_services_keys_is_stopped(
    scoped: Settings, users: dict[str, ServiceKeys], service: str, borrowed: str
) -> None:
    store = ArtifactStore.from_settings(as_service(scoped, users[borrowed]))
    with pytest.raises(WrongCredentials, match=f"these are not {service}'s credentials"):
        check_own_access(store, as_service(scoped, users[borrowed]), service)
    check_own_access(ArtifactStore.from_settings(as_service(scoped, users[service])), scoped, service)


def test_a_service_process_started_with_another_services_keys_fails_loudly(
    scoped: Settings, users: dict[str, ServiceKeys]
) -> None:
    borrowed = users["ingest"]
    env = {
        **os.environ,
        "CONVEYOR_ARTIFACTS_BUCKET": scoped.artifacts_bucket,
        "CONVEYOR_LANDING_BUCKET": scoped.landing_bucket,
        "CONVEYOR_MINIO_ACCESS_KEY": borrowed.access_key,
        "CONVEYOR_MINIO_SECRET_KEY": borrowed.secret_key.get_secret_value(),
        "CONVEYOR_CONSUMER_GROUP_PREFIX": f"lp-{uuid.uuid4().hex[:8]}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.train"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0
    assert "train cannot write" in result.stderr + result.stdout, result.stderr[-2000:]


def _minio_users_step(scoped: Settings, keys: dict[str, ServiceKeys]) -> subprocess.CompletedProcess[str]:
    """docker-compose's minio-users step, run as compose runs it: root keys and each service's keys."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONVEYOR_MINIO_")}
    env |= {
        "CONVEYOR_MINIO_ENDPOINT": scoped.s3_endpoint,
        "CONVEYOR_MINIO_ACCESS_KEY": scoped.minio_access_key,
        "CONVEYOR_MINIO_SECRET_KEY": scoped.minio_secret_key.get_secret_value(),
        "CONVEYOR_ARTIFACTS_BUCKET": scoped.artifacts_bucket,
        "CONVEYOR_LANDING_BUCKET": scoped.landing_bucket,
    }
    for service, mine in keys.items():
        access, secret = environment_names(service)
        env |= {access: mine.access_key, secret: mine.secret_key.get_secret_value()}
    return subprocess.run(
        [sys.executable, "-m", "infra", "minio-users"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_composes_minio_users_step_gives_each_service_the_keys_it_was_handed(scoped: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    keys = {service: new_service_keys(f"{service}-compose-{tag}") for service in WRITES}
    incomplete = _minio_users_step(scoped, {k: v for k, v in keys.items() if k != "console"})
    assert incomplete.returncode == 1
    assert "set CONVEYOR_MINIO_CONSOLE_ACCESS_KEY, CONVEYOR_MINIO_CONSOLE_SECRET_KEY" in incomplete.stderr
    with pytest.raises(S3Error):  # nothing was made of an incomplete set
        minio_client(as_service(scoped, keys["ingest"])).bucket_exists(scoped.artifacts_bucket)

    done = _minio_users_step(scoped, keys)
    assert done.returncode == 0, done.stderr[-2000:]
    ingest = minio_client(as_service(scoped, keys["ingest"]))
    write(ingest, scoped.artifacts_bucket, "datasets/compose/part-0.parquet")
    assert denied(lambda: write(ingest, scoped.artifacts_bucket, "registry/compose/journal/0.json"))
    console = minio_client(as_service(scoped, keys["console"]))
    console.get_object(scoped.artifacts_bucket, "datasets/compose/part-0.parquet").close()
    assert all(
        denied(lambda prefix=prefix: write(console, scoped.artifacts_bucket, f"{prefix}compose"))
        for prefixes in WRITES.values()
        for prefix in prefixes
    )

    # A new secret in .env takes effect at the next start; the old one stops working.
    rotated = {
        **keys,
        "ingest": ServiceKeys(access_key=keys["ingest"].access_key, secret_key=SecretStr("n" * 40)),
    }
    assert _minio_users_step(scoped, rotated).returncode == 0
    write(minio_client(as_service(scoped, rotated["ingest"])), scoped.artifacts_bucket, "datasets/compose/x")
    assert denied_any(lambda: write(ingest, scoped.artifacts_bucket, "datasets/compose/y"))


def denied_any(call: object) -> bool:
    """Refused for any reason MinIO gives a wrong secret (SignatureDoesNotMatch, InvalidAccessKeyId)."""
    try:
        call()  # type: ignore[operator]
    except S3Error:
        return True
    return False


def test_a_service_user_facing_a_missing_bucket_is_told_who_makes_it(settings: Settings) -> None:
    tag = uuid.uuid4().hex[:10]
    fresh = settings.model_copy(
        update={"artifacts_bucket": f"lp-gone-{tag}", "landing_bucket": f"lp-land2-{tag}"}
    )
    users = provision_users(fresh)  # users whose policies name both buckets
    root = minio_client(fresh)
    root.remove_bucket(fresh.artifacts_bucket)  # then one of them is gone
    try:
        store = ArtifactStore.from_settings(as_service(fresh, users["ingest"]))
        with pytest.raises(
            BucketMissingError, match="may not create it: buckets are made with the root keys"
        ):
            store.ensure_buckets()
        assert not root.bucket_exists(fresh.artifacts_bucket)
    finally:
        root.remove_bucket(fresh.landing_bucket)
