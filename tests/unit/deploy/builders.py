"""Approvals and approved versions for unit tests, without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.deploy.records import ApprovedVersion
from services.deploy.serving.predict import ModelCard
from shared.events import ArtifactRef, DeploymentTarget, LineageSummary, ModelApproved

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def approval(version: int, *, pipeline: str = "churn", minutes: int = 0) -> ModelApproved:
    """A ModelApproved for ``version``, occurring ``minutes`` after T0."""
    event = ModelApproved.first(
        producer="registry",
        pipeline=pipeline,
        version=version,
        run_id=f"run-{version}",
        model=ArtifactRef(uri=f"s3://art/models/v{version}.skops", sha256=f"{version:064x}", size_bytes=10),
        metrics={},
        lineage=LineageSummary(
            run_id=f"run-{version}",
            dataset_version="0" * 64,
            spec_version="spec-1",
            code_version="test",
            framework_version="1.9.1",
            lineage_uri=f"s3://art/lineage/v{version}.json",
        ),
        deployment=DeploymentTarget(),
        approved_by="test",
    )
    return event.model_copy(update={"occurred_at": T0 + timedelta(minutes=minutes)})


def approved(version: int, *, pipeline: str = "churn", minutes: int = 0) -> ApprovedVersion:
    """The ApprovedVersion the deploy service records for ``approval(version)``."""
    card = ModelCard(
        pipeline=pipeline, version=version, task="classification", numeric=("age",), sha256=f"{version:064x}"
    )
    return ApprovedVersion.of(approval(version, pipeline=pipeline, minutes=minutes), card)
