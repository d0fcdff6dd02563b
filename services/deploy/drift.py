"""Drift checks over captured predictions, against the training data's profile.

This runs in the deploy service, subscribed to PredictionsCaptured, rather than inside the
serving workers: a pipeline's captures are keyed by pipeline, so one consumer sees every
worker's and every server's predictions in one window; the serving path stays free of PSI
computation; and the retrain cooldown is kept in one place (MinIO), so it survives restarts.
Windows themselves are in memory: a restart loses at most one partial window per pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID, uuid5

import pandas as pd

from services.deploy.artifacts import read_profile
from services.deploy.records import ApprovedVersion, DeploymentRecord
from shared.events import DriftChecked, DriftDetected, Event, PredictionsCaptured, RetrainRequested
from shared.profile import DataProfile, psi_by_feature
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, ObjectNotFoundError
from shared.uris import ObjectLocation, safe_segment

log = logging.getLogger("conveyor.deploy.drift")

PRODUCER = "deploy"
MONITORING_PREFIX = "deploy/monitoring"


@dataclass(frozen=True)
class Baseline:
    """What one served version's live features are compared with, and how."""

    profile: DataProfile
    threshold: float
    window: int
    cooldown_seconds: int


@dataclass
class Window:
    """Captured feature rows of one version, until there are enough for a check."""

    version: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature of one window, and the features past the threshold."""

    psi: dict[str, float]
    drifted: list[str]
    window_size: int
    threshold: float


def read_baseline(store: ArtifactStore, specs: SpecStore, version: ApprovedVersion) -> Baseline:
    """The training profile and the spec's drift settings of a served version."""
    spec = specs.get(version.card.pipeline, version.spec_version)
    return Baseline(
        profile=read_profile(store, version.lineage_uri),
        threshold=spec.deployment.drift_psi_threshold,
        window=spec.deployment.drift_window,
        cooldown_seconds=spec.deployment.retrain_cooldown_seconds,
    )


def check_window(rows: list[dict[str, Any]], baseline: Baseline) -> DriftReport:
    """PSI of every profiled feature over ``rows``; drifted are those above the threshold."""
    psi = {
        name: round(value, 6) for name, value in psi_by_feature(baseline.profile, pd.DataFrame(rows)).items()
    }
    drifted = sorted(name for name, value in psi.items() if value > baseline.threshold)
    return DriftReport(psi=psi, drifted=drifted, window_size=len(rows), threshold=baseline.threshold)


class Cooldowns(Protocol):
    """Where retrain requests are remembered."""

    def last_requested(self, pipeline: str) -> datetime | None:
        """When retraining was last requested for ``pipeline``."""
        ...

    def record(self, pipeline: str, at: datetime) -> None:
        """Remember a retrain request."""
        ...


class CooldownStore:
    """When each pipeline last asked for retraining, kept in MinIO so a restart does not forget it."""

    def __init__(self, store: ArtifactStore, *, bucket: str) -> None:
        self._store = store
        self._bucket = bucket

    def last_requested(self, pipeline: str) -> datetime | None:
        """When retraining was last requested for ``pipeline``."""
        try:
            data = json.loads(self._store.get_verified(self._location(pipeline)))
        except ObjectNotFoundError:
            return None
        return datetime.fromisoformat(data["last_requested_at"])

    def record(self, pipeline: str, at: datetime) -> None:
        """Remember a retrain request."""
        self._store.replace(
            self._location(pipeline), json.dumps({"last_requested_at": at.isoformat()}).encode()
        )

    def _location(self, pipeline: str) -> ObjectLocation:
        name = safe_segment(pipeline, what="pipeline")
        return ObjectLocation(self._bucket, f"{MONITORING_PREFIX}/{name}/retrain.json")


class DriftMonitor:
    """Windows captured predictions per pipeline and checks each full window for drift."""

    def __init__(
        self,
        *,
        store: ArtifactStore,
        baselines: Callable[[ApprovedVersion], Baseline],
        lookup: Callable[[str], DeploymentRecord | None],
        cooldowns: Cooldowns,
        bucket: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._read_baseline = baselines
        self._lookup = lookup
        self._cooldowns = cooldowns
        self._bucket = bucket
        self._clock = clock
        self._windows: dict[str, Window] = {}
        self._baselines: dict[tuple[str, int], Baseline] = {}

    async def on_captured(self, event: PredictionsCaptured) -> list[Event]:
        """Add the captures to their pipeline's window; check every window that fills up."""
        record = self._lookup(event.pipeline)
        version = record.versions.get(event.version) if record is not None else None
        if version is None:
            log.warning("captures of unknown %s version %d ignored", event.pipeline, event.version)
            return []
        baseline = await self._baseline(version)
        window = self._window(event.pipeline, event.version)
        outputs: list[Event] = []
        for captured in event.predictions:
            if captured.prediction_id in window.ids:
                continue  # a redelivered capture
            window.ids.add(captured.prediction_id)
            window.rows.append(dict(captured.features))
            if len(window.rows) >= baseline.window:
                outputs += await self._check(event, window.rows, baseline, check=len(outputs))
                window = self._windows[event.pipeline] = Window(version=event.version)
        return outputs

    async def _check(
        self, event: PredictionsCaptured, rows: list[dict[str, Any]], baseline: Baseline, *, check: int
    ) -> list[Event]:
        report = await asyncio.to_thread(check_window, rows, baseline)
        report_uri = await asyncio.to_thread(self._write_report, event, report)
        common = self._envelope(event, check)
        outputs: list[Event] = [
            DriftChecked(
                **common("DriftChecked"),
                version=event.version,
                window_size=report.window_size,
                psi=report.psi,
                threshold=report.threshold,
                report_uri=report_uri,
            )
        ]
        if not report.drifted:
            return outputs
        log.warning("%s version %d drifted: %s", event.pipeline, event.version, report.drifted)
        outputs.append(
            DriftDetected(
                **common("DriftDetected"),
                version=event.version,
                psi=report.psi,
                threshold=report.threshold,
                drifted_features=report.drifted,
            )
        )
        if await asyncio.to_thread(self._claim_retrain, event.pipeline, baseline.cooldown_seconds):
            drifted = ", ".join(report.drifted)
            reason = f"drift in {drifted} (PSI above {report.threshold}) on version {event.version}"
            outputs.append(
                RetrainRequested(
                    **common("RetrainRequested"), reason=reason[:4000], drift_report_uri=report_uri
                )
            )
        return outputs

    def _claim_retrain(self, pipeline: str, cooldown_seconds: int) -> bool:
        """Whether the cooldown has passed; if so, the request is recorded before it is published."""
        now = self._clock()
        last = self._cooldowns.last_requested(pipeline)
        if last is not None and (now - last).total_seconds() < cooldown_seconds:
            return False
        self._cooldowns.record(pipeline, now)
        return True

    def _write_report(self, event: PredictionsCaptured, report: DriftReport) -> str:
        body = {
            "pipeline": event.pipeline,
            "version": event.version,
            "checked_at": self._clock().isoformat(),
            "window_size": report.window_size,
            "threshold": report.threshold,
            "psi": report.psi,
            "drifted_features": report.drifted,
        }
        data = json.dumps(body, indent=2, sort_keys=True).encode()
        prefix = f"{MONITORING_PREFIX}/{event.pipeline}/v{event.version}/drift"
        ref = self._store.put_content_addressed(
            data, bucket=self._bucket, prefix=prefix, suffix=".json", content_type="application/json"
        )
        return ref.uri

    async def _baseline(self, version: ApprovedVersion) -> Baseline:
        key = (version.card.pipeline, version.version)
        if key not in self._baselines:
            self._baselines[key] = await asyncio.to_thread(self._read_baseline, version)
        return self._baselines[key]

    def _window(self, pipeline: str, version: int) -> Window:
        window = self._windows.get(pipeline)
        if window is None or window.version != version:  # a new version starts a new window
            window = self._windows[pipeline] = Window(version=version)
        return window

    @staticmethod
    def _envelope(event: PredictionsCaptured, check: int) -> Callable[[str], dict[str, Any]]:
        def envelope(kind: str) -> dict[str, Any]:
            # Several events of one kind may follow one capture batch: the id names which.
            event_id: UUID = uuid5(event.event_id, f"{kind}:{check}")
            return {
                "event_id": event_id,
                "correlation_id": event.correlation_id,
                "causation_id": event.event_id,
                "producer": PRODUCER,
                "pipeline": event.pipeline,
            }

        return envelope
