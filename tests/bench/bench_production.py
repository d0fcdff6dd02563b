"""Time to production: from a DataArrived to the endpoint answering with the new model version.

All five services run as processes (consumer groups, buckets, ports and state of their own).
Each round applies a new pipeline (auto approval, real-time endpoint) and publishes the
breast-cancer data for it; the clock stops when the pipeline's endpoint answers a prediction
from the new version. The baseline is the in-process compute of the same steps on the same
bytes: read, validate, profile and split, fit with the spec's search, score and gate, then
serialise and load the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pandas as pd
from sklearn.datasets import load_breast_cancer

from services.evaluate.gates import apply_gates
from services.evaluate.metrics import score_model
from services.ingest.split import split_dataset
from services.ingest.validation import read_dataset, validate_dataset
from services.train.fitting import fit_with_search
from shared.clients.events import EventWatcher, publish_data_arrival
from shared.events import (
    ALL_EVENTS,
    DatasetValidated,
    Event,
    ModelApproved,
    ModelDeployed,
    ModelEvaluated,
    ModelRegistered,
    ModelRejected,
    ModelTrained,
)
from shared.messaging import ensure_topics
from shared.model_format import dump_model, load_model
from shared.pipeline_spec import PipelineSpec, resolve_features
from shared.profile import profile_frame
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, minio_client
from tests.bench.harness import BenchContext, remove_bucket
from tests.bench.load import median
from tests.bench.report import Section, now
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import ServiceProcess, free_port, free_port_range

SERVICES = ("registry", "ingest", "train", "evaluate", "deploy")
STAGES: tuple[tuple[str, type[Event]], ...] = (
    ("ingest (DataArrived → DatasetValidated)", DatasetValidated),
    ("train (→ ModelTrained)", ModelTrained),
    ("evaluate (→ ModelEvaluated)", ModelEvaluated),
    ("registry (→ ModelRegistered)", ModelRegistered),
    ("approval (→ ModelApproved)", ModelApproved),
    ("deploy (→ ModelDeployed)", ModelDeployed),
)

ANALYSIS = """
A version is a thing a warm worker loads, not a process. For a new version of a running endpoint
the deploy service verifies the artifact, imports it into the BentoML store with warm-up rows of
the version's test split and their answers, and asks every worker over its control socket to
prepare it (load, check the digest and types, answer the warm-up rows as recorded) while the old
version serves; then to activate it, which each worker does between two requests. No process
starts, so what remains is the import (a MinIO read, a skops load, the warm-up) and the two
commands. For a first version the endpoint needs a worker: a spare one, started when the deploy
service starts and waiting with its imports done (BentoML's server stack, scikit-learn with SciPy,
skops, pandas: seconds), is handed the endpoint's socket and becomes its worker; only what reads
the endpoint's own environment (Prometheus's multiprocess directory, the service module) is
imported after the hand-over. Every other hop is a Kafka publish and a consumer wake-up plus MinIO
writes that the in-process path never makes.
"""


def breast_cancer(seed: int) -> pd.DataFrame:
    """90 % of the breast-cancer rows, a different sample per seed (so a new dataset version)."""
    frame = load_breast_cancer(as_frame=True).frame
    return frame.sample(frac=0.9, random_state=seed).reset_index(drop=True)


def spec_for(name: str) -> PipelineSpec:
    """The end-to-end tests' spec: logistic regression, a gate, automatic approval, an endpoint."""
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": "target",
            "task": "classification",
            "estimator": {"path": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
            "gates": [{"metric": "accuracy", "min": 0.85}],
            "approval": "auto",
            "deployment": {"realtime": True},
        }
    )


def in_process(data: bytes, spec: PipelineSpec) -> dict[str, float]:
    """Seconds of each step computed here, on the same bytes, with nothing stored or sent."""
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        times[name] = time.perf_counter() - clock
        clock = time.perf_counter()

    frame = read_dataset(data, fmt="csv")
    lap("load")
    results = validate_dataset(frame, spec=spec)
    features = resolve_features(spec, frame)
    profile_frame(frame, numeric=features.numeric, categorical=features.categorical)
    train, test = split_dataset(frame, spec=spec)
    lap("validate, profile, split")
    fit = fit_with_search(spec, train, features=features)
    lap("fit (search + refit)")
    scores = score_model(fit.pipeline, test, spec=spec)
    apply_gates(spec, metrics=scores.metrics)
    lap("evaluate")
    load_model(dump_model(fit.pipeline))
    lap("serialise + load model")
    assert all(r.passed for r in results if r.severity == "error")
    return times


@dataclass
class Stack:
    """The five services as processes and what they need."""

    settings: Settings
    processes: dict[str, ServiceProcess]
    watcher: EventWatcher
    specs: SpecStore


def _settings(context: BenchContext, *, every_core: bool = False) -> tuple[Settings, dict[str, str]]:
    tag = f"{context.run_id}-prod"
    settings = context.settings.model_copy(
        update={
            "consumer_group_prefix": f"bench-{tag}",
            "registry_port": free_port(),
            "deploy_port": free_port(),
            "state_dir": context.scratch("production-state"),
            "artifacts_bucket": f"bench-art-{tag}",
            "landing_bucket": f"bench-land-{tag}",
        }
    )
    env = context.service_env(
        state_dir=settings.state_dir,
        every_core=every_core,
        CONVEYOR_CONSUMER_GROUP_PREFIX=settings.consumer_group_prefix,
        CONVEYOR_REGISTRY_PORT=str(settings.registry_port),
        CONVEYOR_DEPLOY_PORT=str(settings.deploy_port),
        CONVEYOR_ARTIFACTS_BUCKET=settings.artifacts_bucket,
        CONVEYOR_LANDING_BUCKET=settings.landing_bucket,
        CONVEYOR_SERVING_PORT_BASE=str(free_port_range(20, low=12000, high=20000)),
        CONVEYOR_SERVING_PORT_COUNT="20",
    )
    return settings, env


async def _start(context: BenchContext, *, every_core: bool = False) -> Stack:
    """The five services; single-threaded unless ``every_core`` (then as they run outside benchmarks)."""
    settings, env = _settings(context, every_core=every_core)
    topics = [event.topic for event in ALL_EVENTS]
    await ensure_topics(settings, topics)
    for name in SERVICES:  # new groups skip what was published before this run
        await start_group_at_end(settings, group_id=f"{settings.consumer_group_prefix}-{name}", topics=topics)
    watcher = EventWatcher(settings, topics)
    await watcher.start()
    store = ArtifactStore.from_settings(settings)
    await asyncio.to_thread(store.ensure_buckets)
    processes: dict[str, ServiceProcess] = {}
    log_dir = context.scratch("production-logs")
    stack = Stack(settings, processes, watcher, SpecStore(store, bucket=settings.artifacts_bucket))
    try:
        for name in SERVICES:
            url = {"registry": settings.registry_base_url, "deploy": settings.deploy_base_url}.get(name)
            process = ServiceProcess(
                name, env=env, log_dir=log_dir, ready_url=f"{url}/health/ready" if url else None
            )
            processes[name] = process
            await asyncio.to_thread(process.start, timeout=120)
    except BaseException:
        await _stop(stack)
        raise
    return stack


async def _stop(stack: Stack) -> None:
    for process in reversed(stack.processes.values()):
        with contextlib.suppress(Exception):
            await asyncio.to_thread(process.stop)
    await stack.watcher.stop()
    client = minio_client(stack.settings)
    for bucket in (stack.settings.artifacts_bucket, stack.settings.landing_bucket):
        with contextlib.suppress(Exception):
            await asyncio.to_thread(remove_bucket, client, bucket)


async def _served(url: str, row: dict[str, float], *, version: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            answer = await client.post(f"{url}/v1/predict", json=row)
            return answer.is_success and answer.json().get("version") == version
    except httpx.TransportError:
        return False


async def _until_served(deployed: ModelDeployed, row: dict[str, float]) -> datetime:
    """When the endpoint first answered with the deployed version."""
    deadline = time.perf_counter() + 60
    while not await _served(deployed.endpoint_url, row, version=deployed.version):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{deployed.endpoint_url} did not serve version {deployed.version}")
        await asyncio.sleep(0.01)
    return datetime.now(UTC)


_SWAP_ATTEMPTS = 5


async def _hot_swap(stack: Stack, *, name: str, seed: int, row: dict[str, float]) -> float:
    """Seconds from a new version's ModelApproved to the running endpoint answering with it.

    A second sample of the data may train a version the champion gate rejects (a little worse on
    the new test split): the next sample is tried, a few times at most.
    """
    for attempt in range(_SWAP_ATTEMPTS):
        data = breast_cancer(seed=seed + attempt).to_csv(index=False).encode()
        arrival = await publish_data_arrival(stack.settings, pipeline=name, data=data, filename="bc-2.csv")
        outcome = await stack.watcher.wait_for(
            ModelDeployed, ModelRejected, correlation_id=arrival.correlation_id, timeout=300
        )
        if isinstance(outcome, ModelDeployed):
            deployed = outcome
            break
    else:
        raise AssertionError(f"{_SWAP_ATTEMPTS} new samples of {name} were all rejected by the champion gate")
    answered = await _until_served(deployed, row)
    [approved] = stack.watcher.events(ModelApproved, correlation_id=arrival.correlation_id)
    return (answered - approved.occurred_at).total_seconds()


async def _one_round(stack: Stack, *, name: str, data: bytes, row: dict[str, float]) -> dict[str, float]:
    """Seconds from publishing the arrival to the endpoint serving, and the stage durations."""
    stack.specs.apply(spec_for(name))
    began = time.perf_counter()
    arrival = await publish_data_arrival(stack.settings, pipeline=name, data=data, filename="bc.csv")
    deployed = await stack.watcher.wait_for(ModelDeployed, correlation_id=arrival.correlation_id, timeout=300)
    assert isinstance(deployed, ModelDeployed)
    await _until_served(deployed, row)
    figures = {"wall": time.perf_counter() - began}
    previous = arrival.occurred_at
    for stage, event_type in STAGES:
        found = stack.watcher.events(event_type, correlation_id=arrival.correlation_id)
        if found:
            figures[stage] = (found[0].occurred_at - previous).total_seconds()
            previous = found[0].occurred_at
    trained = stack.watcher.events(ModelTrained, correlation_id=arrival.correlation_id)
    if trained:
        figures["fit inside train"] = trained[0].training_seconds
    return figures


async def run(context: BenchContext) -> Section:
    """Alternate a pipeline run through the services with the same compute in process."""
    started = time.perf_counter()
    rounds_n = 1 if context.quick else 3
    await asyncio.to_thread(in_process, breast_cancer(seed=99).to_csv(index=False).encode(), spec_for("warm"))
    stack = await _start(context)
    walls: list[float] = []
    swaps: list[float] = []
    computes: list[float] = []
    stages: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    try:
        for index in range(rounds_n):
            frame = breast_cancer(seed=index)
            data = frame.to_csv(index=False).encode()
            row = {k: float(v) for k, v in frame.drop(columns=["target"]).iloc[0].items()}
            name = f"bench-prod-{context.run_id}-{index}-{uuid.uuid4().hex[:4]}"
            figures = await _one_round(stack, name=name, data=data, row=row)
            walls.append(figures.pop("wall"))
            swaps.append(await _hot_swap(stack, name=name, seed=index + 50, row=row))
            for stage, seconds in figures.items():
                stages.setdefault(stage, []).append(seconds)
            times = await asyncio.to_thread(in_process, data, spec_for(name))
            computes.append(sum(times.values()))
            for step, seconds in times.items():
                steps.setdefault(step, []).append(seconds)
    finally:
        await _stop(stack)
    wall, compute = median(walls), median(computes)
    section = Section(
        key="production",
        title="4. Time to production (breast cancer, logistic regression)",
        method=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip()
        + f" {rounds_n} round(s), each a new pipeline (a first version: a spare worker takes the"
        " endpoint), then a second arrival for the same pipeline (a new version switched into the"
        " running worker), medians.",
        quick=context.quick,
    )
    section.add(
        "DataArrived → endpoint serves, vs in-process compute",
        wall,
        compute,
        unit="s",
        target="≤ 1.25x",
        met=wall <= 1.25 * compute,
    )
    section.add(
        "wall time, absolute (first version)", wall, None, unit="s", target="≤ 2.5 s", met=wall <= 2.5
    )
    swap = median(swaps)
    section.add(
        "ModelApproved → the new version answering (running endpoint)",
        swap,
        None,
        unit="s",
        target="≤ 0.5 s",
        met=swap <= 0.5,
    )
    section.add(
        "overhead (wall - compute)", wall - compute, None, unit="s", target="≤ 10 s", met=wall - compute <= 10
    )
    section.notes.append(
        "where the wall time goes (median s, from the events' timestamps): "
        + "; ".join(f"{stage} {median(values):.2f}" for stage, values in stages.items())
    )
    section.notes.append(
        "in-process steps (median s): "
        + "; ".join(f"{step} {median(values):.3f}" for step, values in steps.items())
    )
    section.notes.append("per round, wall s: " + ", ".join(f"{w:.1f}" for w in walls))
    section.notes.append(
        "per round, approval → new version answering, s: " + ", ".join(f"{s:.2f}" for s in swaps)
    )
    section.analysis = ANALYSIS
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section
