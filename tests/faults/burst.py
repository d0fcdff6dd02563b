"""A burst of data arrivals through the whole stack, and the checks that nothing was lost or done twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import cache

import httpx
import pandas as pd
from sklearn.datasets import load_breast_cancer

from shared.clients.events import EventWatcher, publish_data_arrival
from shared.events import (
    DataArrived,
    DatasetValidated,
    Event,
    ModelApproved,
    ModelEvaluated,
    ModelRegistered,
    ModelRejected,
    ModelTrained,
)
from shared.pipeline_spec import PipelineSpec
from tests.e2e.conftest import Stack
from tests.faults.dlq_tools import letters_for

BURST = 20
# Small enough that one PredictionsCaptured event can fill a window and cause a drift check.
DRIFT_WINDOW = 20
CHAIN: tuple[type[Event], ...] = (DatasetValidated, ModelTrained, ModelEvaluated, ModelRegistered)
DECISIONS: tuple[type[Event], ...] = (ModelApproved, ModelRejected)


@cache
def _breast_cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def dataset_csv(seed: int) -> bytes:
    """A seeded 90% sample of scikit-learn's breast-cancer data: distinct bytes per seed."""
    return _breast_cancer().sample(frac=0.9, random_state=seed).to_csv(index=False).encode()


def feature_row() -> dict[str, float]:
    """One row of features (no target), as an endpoint takes it."""
    row = _breast_cancer().drop(columns=["target"]).iloc[0]
    return {str(k): float(v) for k, v in row.items()}


def cheap_spec(name: str, *, realtime: bool = False, drift_window: int = 500) -> PipelineSpec:
    """A logistic regression (fitted in well under a second), gated on accuracy, approved automatically."""
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": "target",
            "task": "classification",
            "estimator": {"path": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
            "gates": [{"metric": "accuracy", "min": 0.85}],
            "approval": "auto",
            "deployment": {"realtime": realtime, "batch": True, "drift_window": drift_window},
        }
    )


@dataclass(frozen=True)
class Burst:
    """The arrivals of one burst for one pipeline."""

    pipeline: str
    arrivals: list[DataArrived]

    @property
    def correlations(self) -> list[uuid.UUID]:
        """One correlation id per arrival."""
        return [arrival.correlation_id for arrival in self.arrivals]


async def publish_burst(
    stack: Stack, pipeline: str, *, count: int = BURST, realtime: bool = False, first_seed: int = 0
) -> Burst:
    """Apply the cheap spec, then publish ``count`` arrivals of distinct datasets as fast as the SDK goes."""
    await asyncio.to_thread(stack.specs.apply, cheap_spec(pipeline, realtime=realtime))
    arrivals = await asyncio.gather(
        *(
            publish_data_arrival(
                stack.settings, pipeline=pipeline, data=dataset_csv(seed), filename=f"part-{seed}.csv"
            )
            for seed in range(first_seed, first_seed + count)
        )
    )
    return Burst(pipeline=pipeline, arrivals=list(arrivals))


def reached(watcher: EventWatcher, burst: Burst, *event_types: type[Event]) -> int:
    """How many arrivals of the burst have an event of any of ``event_types`` in their chain."""
    return sum(any(watcher.events(t, correlation_id=c) for t in event_types) for c in burst.correlations)


async def wait_until_reached(
    watcher: EventWatcher, burst: Burst, *event_types: type[Event], count: int | None = None, timeout: float
) -> float:
    """Poll until ``count`` (default: every) arrival reached ``event_types``; return the seconds it took."""
    wanted = len(burst.arrivals) if count is None else count
    started = time.monotonic()
    while (done := reached(watcher, burst, *event_types)) < wanted:
        if time.monotonic() - started > timeout:
            names = "/".join(t.__name__ for t in event_types)
            raise AssertionError(
                f"{burst.pipeline}: only {done} of {wanted} arrivals reached {names} within {timeout:.0f}s"
            )
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def wait_until_decided(stack: Stack, burst: Burst, *, timeout: float) -> float:
    """Poll until every arrival has a registered version and a decision on it; return the seconds it took."""
    started = time.monotonic()
    await wait_until_reached(stack.watcher, burst, ModelRegistered, timeout=timeout)
    await wait_until_reached(stack.watcher, burst, *DECISIONS, timeout=timeout - (time.monotonic() - started))
    return time.monotonic() - started


@dataclass(frozen=True)
class Delivery:
    """What the burst's chains look like on the topics: records, and records that repeat an event id."""

    records: int
    repeats: int


def assert_processed_once_in_effect(watcher: EventWatcher, burst: Burst) -> Delivery:
    """Each arrival's chain holds one event id per step (repeats of that id allowed) and one decision."""
    records = repeats = 0
    problems = []
    for arrival in burst.arrivals:
        for step in (*CHAIN, DECISIONS):
            types = step if isinstance(step, tuple) else (step,)
            events = [e for t in types for e in watcher.events(t, correlation_id=arrival.correlation_id)]
            ids = Counter(e.event_id for e in events)
            records += len(events)
            repeats += len(events) - len(ids)
            if len(ids) != 1:
                names = "/".join(t.__name__ for t in types)
                problems.append(
                    f"{arrival.uri}: {len(ids)} distinct {names} event ids {sorted(map(str, ids))}"
                )
        versions = {e.version for e in watcher.events(ModelRegistered, correlation_id=arrival.correlation_id)}
        if len(versions) != 1:
            problems.append(f"{arrival.uri}: registered as versions {sorted(versions)}")
    assert not problems, f"{burst.pipeline}: not exactly once in effect:\n" + "\n".join(problems)
    return Delivery(records=records, repeats=repeats)


async def assert_registered_versions(stack: Stack, burst: Burst) -> None:
    """The registry holds versions 1..N, one per arrival, each decided."""
    async with httpx.AsyncClient(base_url=stack.settings.registry_base_url, timeout=10) as client:
        response = await client.get(f"/v1/groups/{burst.pipeline}/versions")
    assert response.status_code == 200, response.text
    versions = response.json()
    count = len(burst.arrivals)
    assert [v["version"] for v in versions] == list(range(1, count + 1)), (
        f"{burst.pipeline}: expected versions 1..{count}, got {[v['version'] for v in versions]}"
    )
    assert len({v["run_id"] for v in versions}) == count, f"{burst.pipeline}: a run registered twice"
    undecided = [v for v in versions if v["status"] not in ("Approved", "Rejected")]
    assert not undecided, f"{burst.pipeline}: versions left without a decision: {undecided}"


def assert_one_artifact_per_run(stack: Stack, burst: Burst) -> None:
    """One run directory per arrival under runs/<pipeline>/, each with one model, lineage and record."""
    keys = stack.store.list_keys(bucket=stack.settings.artifacts_bucket, prefix=f"runs/{burst.pipeline}/")
    runs: dict[str, list[str]] = {}
    for key in keys:
        run_id, _, name = key.removeprefix(f"runs/{burst.pipeline}/").partition("/")
        runs.setdefault(run_id, []).append(name)
    count = len(burst.arrivals)
    assert len(runs) == count, f"{burst.pipeline}: {len(runs)} run directories for {count} arrivals"
    odd = {
        run: names
        for run, names in runs.items()
        if sorted(names) != ["lineage.json", "model.skops", "run.json"]
    }
    assert not odd, f"{burst.pipeline}: runs with missing or extra artifacts: {odd}"
    datasets = stack.store.list_keys(
        bucket=stack.settings.artifacts_bucket, prefix=f"datasets/{burst.pipeline}/"
    )
    raw = [key for key in datasets if "/raw/" in key]
    assert len(raw) == count, f"{burst.pipeline}: {len(raw)} raw dataset objects for {count} arrivals"


def assert_no_dead_letters(dead_letters: EventWatcher, burst: Burst, topics: list[str]) -> None:
    """Nothing of the burst's pipeline went to a dead-letter topic."""
    found = [
        (record.topic, dict(record.headers).get("conveyor-dlq-reason"))
        for topic in topics
        for record in letters_for(dead_letters, topic, key=burst.pipeline.encode())
    ]
    assert not found, f"{burst.pipeline}: dead-lettered during the fault: {found}"
