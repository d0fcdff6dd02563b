"""Least privilege in MinIO: what each service may write, as an IAM policy, and a start-up check.

Every service reads the artifacts and landing buckets (models are verified against their digest
before use anyway) but writes only under its own prefixes: ingest its datasets and reports, train
its runs (models and lineage), evaluate its evaluations, the registry alone its journal and
snapshots, deploy its records and batch predictions; the console writes nothing. The BentoML
servers get no MinIO credentials at all (services.deploy.rollout withholds them): they read models
from the local BentoML store.

``infra.minio_users`` creates one MinIO user per service with these policies through MinIO's admin
API; ``check_own_access`` makes a service started with someone else's credentials stop at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from minio.error import S3Error

from shared.approvals import PRIVATE_KEY
from shared.settings import Settings
from shared.storage import ArtifactStore
from shared.uris import ObjectLocation

# The prefixes of the artifacts bucket each service writes (and deletes) under.
WRITES: dict[str, tuple[str, ...]] = {
    "ingest": ("datasets/",),
    "train": ("runs/",),
    "evaluate": ("evaluations/",),
    "registry": ("registry/",),
    "deploy": ("deploy/", "predictions/"),
    "console": (),  # reads reports and models to show them; every change goes through an API
}
READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
LIST_ACTIONS = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation", "s3:GetBucketVersioning"]
WRITE_ACTIONS = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
PROBE = ".access-check"


def policy_document(settings: Settings, service: str) -> dict[str, Any]:
    """The IAM policy of ``service``: read both buckets, write only its own prefixes."""
    buckets = (settings.artifacts_bucket, settings.landing_bucket)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": LIST_ACTIONS, "Resource": [f"arn:aws:s3:::{b}" for b in buckets]},
            {"Effect": "Allow", "Action": READ_ACTIONS, "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets]},
            *_writes_allowed(settings, service),
            *_private_key_denied(settings, service),
        ],
    }


def _writes_allowed(settings: Settings, service: str) -> list[dict[str, Any]]:
    prefixes = WRITES[service]
    if not prefixes:  # a statement without resources is not a valid policy
        return []
    resources = [f"arn:aws:s3:::{settings.artifacts_bucket}/{prefix}*" for prefix in prefixes]
    return [{"Effect": "Allow", "Action": WRITE_ACTIONS, "Resource": resources}]


def _private_key_denied(settings: Settings, service: str) -> list[dict[str, Any]]:
    """Only the registry reads the private half of its approval-signing key (shared.approvals)."""
    if service == "registry":
        return []
    key = f"arn:aws:s3:::{settings.artifacts_bucket}/{PRIVATE_KEY}"
    return [{"Effect": "Deny", "Action": READ_ACTIONS, "Resource": [key]}]


class WrongCredentials(RuntimeError):
    """A service holds credentials that cannot write where it must: most likely another service's."""


def check_own_access(store: ArtifactStore, settings: Settings, service: str) -> None:
    """Write and remove a probe under each of the service's prefixes; fail loudly where it cannot."""
    for prefix in WRITES.get(service, ()):
        location = ObjectLocation(settings.artifacts_bucket, f"{prefix}{PROBE}/{service}-{uuid.uuid4().hex}")
        try:
            store.put(location, b"")
            store.remove(location)
        except S3Error as error:
            raise WrongCredentials(
                f"{service} cannot write s3://{settings.artifacts_bucket}/{prefix} with MinIO user "
                f"{settings.minio_access_key!r} ({error.code}): these are not {service}'s credentials"
            ) from None
