"""Drift checks: PSI per window against the training profile; retraining at most once per cooldown."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import numpy as np
import pandas as pd

from services.deploy.drift import Baseline, CooldownStore, DriftMonitor, check_window
from services.deploy.records import DeploymentRecord
from shared.events import (
    CapturedPrediction,
    DriftChecked,
    DriftDetected,
    PredictionsCaptured,
    RetrainRequested,
)
from shared.profile import profile_frame
from shared.storage import ArtifactStore
from tests.unit.deploy.builders import T0, approved
from tests.unit.deploy.memory_store import MemoryStore

RNG = np.random.default_rng(1)
TRAIN = pd.DataFrame({"age": RNG.normal(40, 10, 2000), "plan": RNG.choice(["basic", "pro"], 2000)})
BASELINE = Baseline(
    profile=profile_frame(TRAIN, numeric=["age"], categorical=["plan"]),
    threshold=0.25,
    window=100,
    cooldown_seconds=3600,
)


def _rows(count: int, *, shift: float = 0.0) -> list[dict[str, Any]]:
    sample = TRAIN.sample(count, random_state=int(RNG.integers(1_000_000)))
    return [
        {"age": float(age) + shift, "plan": plan}
        for age, plan in zip(sample["age"], sample["plan"], strict=True)
    ]


def _captured(rows: list[dict[str, Any]], *, version: int = 1) -> PredictionsCaptured:
    return PredictionsCaptured(
        correlation_id=uuid4(),
        producer="serving",
        pipeline="churn",
        version=version,
        predictions=[
            CapturedPrediction(prediction_id=uuid4().hex, captured_at=T0, features=row, prediction="yes")
            for row in rows
        ],
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _monitor(store: MemoryStore, clock: Clock) -> DriftMonitor:
    record = DeploymentRecord(pipeline="churn", port=8200)
    for version in (1, 2):
        record = record.approved(approved(version, minutes=version), activate=True)
    artifacts = cast(ArtifactStore, store)
    return DriftMonitor(
        store=artifacts,
        baselines=lambda _: BASELINE,
        lookup={"churn": record}.get,
        cooldowns=CooldownStore(artifacts, bucket="art"),
        bucket="art",
        clock=clock,
    )


def test_a_window_like_the_training_data_does_not_drift_and_a_shifted_one_does() -> None:
    steady = check_window(_rows(500), BASELINE)
    shifted = check_window(_rows(500, shift=25), BASELINE)
    assert steady.drifted == [] and set(steady.psi) == {"age", "plan"}
    assert shifted.drifted == ["age"] and shifted.psi["age"] > 1


async def test_every_full_window_is_checked_and_retraining_is_asked_once_per_cooldown() -> None:
    store, clock = MemoryStore(), Clock()
    monitor = _monitor(store, clock)
    assert await monitor.on_captured(_captured(_rows(60))) == []  # not a full window yet
    outputs = await monitor.on_captured(_captured(_rows(40) + _rows(200, shift=30)))
    kinds = [type(e) for e in outputs]
    assert kinds == [DriftChecked, DriftChecked, DriftDetected, RetrainRequested, DriftChecked, DriftDetected]
    assert len({e.event_id for e in outputs}) == len(outputs)
    assert all(e.causation_id == outputs[0].causation_id for e in outputs)
    checked = cast(DriftChecked, outputs[0])
    assert checked.window_size == 100 and checked.report_uri in store.objects

    clock.now += timedelta(hours=2)  # past the cooldown: another request
    later = await _monitor(store, clock).on_captured(_captured(_rows(100, shift=30)))  # a restarted service
    assert [type(e) for e in later] == [DriftChecked, DriftDetected, RetrainRequested]


async def test_the_cooldown_survives_a_restart() -> None:
    store, clock = MemoryStore(), Clock()
    first = await _monitor(store, clock).on_captured(_captured(_rows(100, shift=30)))
    assert RetrainRequested in [type(e) for e in first]
    clock.now += timedelta(minutes=30)
    again = await _monitor(store, clock).on_captured(_captured(_rows(100, shift=30)))
    assert [type(e) for e in again] == [DriftChecked, DriftDetected]


async def test_redelivered_captures_count_once_and_a_new_version_starts_a_new_window() -> None:
    monitor = _monitor(MemoryStore(), Clock())
    batch = _captured(_rows(60))
    assert await monitor.on_captured(batch) == []
    assert await monitor.on_captured(batch) == []  # the same 60 again: still 60 in the window
    assert await monitor.on_captured(_captured(_rows(30), version=2)) == []  # v2: a fresh window
    outputs = await monitor.on_captured(_captured(_rows(70), version=2))
    assert [type(e) for e in outputs] == [DriftChecked] and outputs[0].version == 2  # type: ignore[attr-defined]


async def test_captures_of_an_unknown_version_are_ignored() -> None:
    assert await _monitor(MemoryStore(), Clock()).on_captured(_captured(_rows(200), version=7)) == []
