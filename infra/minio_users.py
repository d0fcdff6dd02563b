"""One MinIO user per service, with the policy of shared.access, created through MinIO's admin API.

Run by ``conveyor up`` / ``make up`` with the root keys once MinIO answers; the users' keys are kept
beside the root keys in the state directory's secrets.json (mode 0600), and each service process
is started with its own (infra.services). Idempotent: existing users keep their keys, policies are
rewritten (so a change of buckets is applied at the next start).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from minio import MinioAdmin
from minio.credentials import StaticProvider
from pydantic import SecretStr

from infra.process import InfraError
from shared.access import WRITES, policy_document
from shared.secrets import ServiceKeys, ensure_service_keys, new_service_keys, read_local_secrets
from shared.settings import Settings
from shared.storage import ArtifactStore


def admin_client(settings: Settings) -> MinioAdmin:
    """MinIO's admin API with the root keys of ``settings``."""
    return MinioAdmin(
        endpoint=settings.s3_endpoint,
        credentials=StaticProvider(settings.minio_access_key, settings.minio_secret_key.get_secret_value()),
        secure=settings.minio_secure,
    )


def policy_name(settings: Settings, service: str) -> str:
    """One policy per service and bucket pair: stacks with other buckets get policies of their own."""
    buckets = f"{settings.artifacts_bucket}\0{settings.landing_bucket}".encode()
    return f"conveyor-{service}-{hashlib.sha256(buckets).hexdigest()[:10]}"


def provision_users(
    settings: Settings, *, known: dict[str, ServiceKeys] | None = None
) -> dict[str, ServiceKeys]:
    """Create (or keep) each service's user and attach its policy; returns every service's keys.

    ``settings`` carries the root keys; the buckets are created first, since no service may.
    """
    ArtifactStore.from_settings(settings).ensure_buckets()
    admin = admin_client(settings)
    keys: dict[str, ServiceKeys] = {}
    for service in WRITES:
        mine = (known or {}).get(service) or new_service_keys(service)
        name = policy_name(settings, service)
        admin.policy_add(name, policy=policy_document(settings, service))
        admin.user_add(mine.access_key, mine.secret_key.get_secret_value())  # same keys: a no-op
        admin.policy_set(name, user=mine.access_key)
        keys[service] = mine
    return keys


def provision_local_users(settings: Settings) -> dict[str, ServiceKeys]:
    """Provision the users of this state directory's stack and keep their keys in its secrets.json."""
    keys = ensure_service_keys(settings.state_dir, WRITES)  # drawn and kept once, then reused
    try:
        return provision_users(settings, known=keys)
    except Exception as error:  # MinIO's admin API answers errors of several kinds
        raise InfraError(
            f"could not create the services' MinIO users as {settings.minio_access_key!r} "
            f"(MinIO running with other root keys than secrets.json? `make down`, `make up`): {error}"
        ) from error


def service_credentials(settings: Settings, service: str) -> dict[str, str]:
    """The CONVEYOR_MINIO_* variables a service process gets: its own user, when one was provisioned."""
    values = read_local_secrets(settings.state_dir)
    keys = values.services.get(service) if values else None
    if keys is None:
        return {}
    return {
        "CONVEYOR_MINIO_ACCESS_KEY": keys.access_key,
        "CONVEYOR_MINIO_SECRET_KEY": keys.secret_key.get_secret_value(),
    }


def environment_names(service: str) -> tuple[str, str]:
    """The variables that carry ``service``'s MinIO keys where no state directory does (docker-compose)."""
    return f"CONVEYOR_MINIO_{service.upper()}_ACCESS_KEY", f"CONVEYOR_MINIO_{service.upper()}_SECRET_KEY"


def keys_from_environment(environ: Mapping[str, str]) -> dict[str, ServiceKeys]:
    """Every service's keys from ``environ``; all of them are required, none is made up."""
    keys: dict[str, ServiceKeys] = {}
    missing: list[str] = []
    for service in WRITES:
        access, secret = environment_names(service)
        missing += [name for name in (access, secret) if not environ.get(name)]
        if environ.get(access) and environ.get(secret):
            keys[service] = ServiceKeys(access_key=environ[access], secret_key=SecretStr(environ[secret]))
    if missing:
        raise InfraError(f"set {', '.join(missing)} (`conveyor token --env` prints them all)")
    return keys


def provision_from_environment(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What docker-compose's init step runs: the buckets, then each service's user with the given keys."""
    keys = keys_from_environment(environ)
    try:
        provisioned = provision_users(settings, known=keys)
    except Exception as error:  # MinIO's admin API answers errors of several kinds
        raise InfraError(f"could not create the services' MinIO users: {error}") from error
    return [f"{service}: MinIO user {provisioned[service].access_key}" for service in WRITES]
