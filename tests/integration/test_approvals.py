"""The registry's approval signatures on the real MinIO: one key pair, exact content, no forgery passes."""

from __future__ import annotations

import uuid

import pytest

from shared.approvals import PRIVATE_KEY, ApprovalNotTrusted, ApprovalSigner, ApprovalVerifier
from shared.events import ArtifactRef, DeploymentTarget, LineageSummary, ModelApproved
from shared.storage import ArtifactStore
from shared.uris import ObjectLocation

pytestmark = pytest.mark.infra


def approved(bucket: str, *, version: int = 1) -> ModelApproved:
    model = ArtifactRef(uri=f"s3://{bucket}/runs/p/r/model.skops", sha256="a" * 64, size_bytes=10)
    return ModelApproved.first(
        producer="registry",
        pipeline="p",
        version=version,
        run_id="r",
        model=model,
        metrics={"f1_macro": 0.9},
        lineage=LineageSummary(
            run_id="r",
            dataset_version="0" * 64,
            spec_version="s",
            code_version="c",
            framework_version="1",
            lineage_uri=f"s3://{bucket}/runs/p/r/lineage.json",
        ),
        deployment=DeploymentTarget(realtime=True, batch=False),
        approved_by="alice",
    )


def test_a_signed_approval_verifies_and_any_change_to_what_is_served_does_not(
    store: ArtifactStore, bucket: str
) -> None:
    signer = ApprovalSigner(store, bucket=bucket)
    signed = signer.sign(approved(bucket))
    verifier = ApprovalVerifier(store, bucket=bucket)
    verifier.verify(signed)
    # The envelope is not signed: a replay of the same approval is the same approval.
    verifier.verify(signed.model_copy(update={"event_id": uuid.uuid4(), "approved_by": "x"}))
    other = ArtifactRef(uri=f"s3://{bucket}/runs/p/x/model.skops", sha256="b" * 64, size_bytes=10)
    for tampered in (
        signed.model_copy(update={"version": 2}),
        signed.model_copy(update={"pipeline": "q"}),
        signed.model_copy(update={"run_id": "x"}),
        signed.model_copy(update={"model": other}),
        signed.model_copy(update={"model": signed.model.model_copy(update={"sha256": "b" * 64})}),
        signed.model_copy(update={"signature": ""}),
        signed.model_copy(update={"signature": "%%%"}),
    ):
        with pytest.raises(ApprovalNotTrusted):
            verifier.verify(tampered)


def test_one_key_pair_per_bucket_whoever_starts_first(store: ArtifactStore, bucket: str) -> None:
    first, second = ApprovalSigner(store, bucket=bucket), ApprovalSigner(store, bucket=bucket)
    first.load()
    second.load()
    ApprovalVerifier(store, bucket=bucket).verify(second.sign(approved(bucket)))
    assert store.get_verified(ObjectLocation(bucket, PRIVATE_KEY)).startswith(b"-----BEGIN PRIVATE KEY")


def test_no_registry_key_no_trust(store: ArtifactStore, bucket: str) -> None:
    foreign = ApprovalSigner(store, bucket=bucket).sign(approved(bucket))  # a key in this bucket...
    store.remove(ObjectLocation(bucket, "registry/keys/approvals-ed25519.pub.pem"))
    with pytest.raises(ApprovalNotTrusted, match="no registry key"):  # ...but none the deploy side trusts
        ApprovalVerifier(store, bucket=bucket).verify(foreign)
