"""Journal entries for registry tests: single facts and a whole history with every kind of entry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.registry.journal import (
    Candidate,
    JournalEntry,
    VersionApproved,
    VersionDeployed,
    VersionRegistered,
    VersionRejected,
)
from shared.events import ArtifactRef, DeploymentTarget, LineageSummary

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REF = ArtifactRef(uri="s3://conveyor-artifacts/churn/m.skops", sha256="b" * 64, size_bytes=1)


def registered(version: int, *, run_id: str | None = None, passed: bool = True) -> VersionRegistered:
    candidate = Candidate(
        run_id=run_id or f"run-{version}",
        correlation_id=uuid.uuid4(),
        evaluated_event_id=uuid.uuid4(),
        dataset_version="a" * 64,
        spec_version="spec-1",
        code_version="0.1.0",
        model=REF,
        lineage=REF,
        lineage_summary=LineageSummary(
            run_id=run_id or f"run-{version}",
            dataset_version="a" * 64,
            spec_version="spec-1",
            code_version="0.1.0",
            framework_version="1.9.1",
            lineage_uri=REF.uri,
        ),
        report=None,
        metrics={"accuracy": 0.9 + version / 1000},
        gates=[],
        passed=passed,
        champion_version=None,
    )
    return VersionRegistered(
        at=T0, version=version, candidate=candidate, approval="manual", deployment=DeploymentTarget()
    )


def deployed(version: int, at: datetime, environment: str = "local") -> VersionDeployed:
    return VersionDeployed(
        at=at,
        version=version,
        environment=environment,
        endpoint_url="http://127.0.0.1:3000",
        deployed_event_id=uuid.uuid4(),
    )


def history(versions: int) -> list[JournalEntry]:
    """Each version registered, then decided (every fourth rejected); approved 3, 6, 9… deployed."""
    entries: list[JournalEntry] = []
    for number in range(1, versions + 1):
        at = T0 + timedelta(minutes=number)
        entries.append(registered(number))
        if number % 4 == 0:
            entries.append(VersionRejected(at=at, version=number, by="bob", comment=f"v{number} biased"))
            continue
        entries.append(VersionApproved(at=at, version=number, by="alice", comment=f"v{number} ok"))
        if number % 3 == 0:
            entries.append(deployed(number, at + timedelta(seconds=30)))
    return entries
