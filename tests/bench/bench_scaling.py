"""Scaling out by consumer group: arrivals per minute with one and two train replicas, and rebalances.

Ingest, evaluate and the registry run once, train once and then twice, all as processes in groups
of their own (no deploy: the specs serve nothing). Each round publishes one arrival per pipeline
for twelve pipelines, two for each of the six partitions, whose training is a CPU-bound grid
search (a random forest, 3 folds); the clock stops when every arrival is registered. The baseline
is the same round with one train replica, run before and again after the two-replica round (the
mean of the two), after an unmeasured first round that gives every pipeline a champion. Between
them a second replica is started (join: until the group lists both with partitions assigned) and
one is SIGKILLed (death: until the survivor holds every partition, which Kafka decides when the
dead member's session times out).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from services.train.fitting import fit_with_search
from shared import topics
from shared.clients.events import EventWatcher, publish_data_arrival
from shared.events import ALL_EVENTS, ModelRegistered, ModelTrained
from shared.messaging import ensure_topics
from shared.pipeline_spec import PipelineSpec
from shared.settings import Settings
from shared.spec_store import SpecStore
from shared.storage import ArtifactStore, minio_client
from tests.bench.bench_production import breast_cancer
from tests.bench.harness import BenchContext, remove_bucket
from tests.bench.profile import CpuMeter, children_of, cpu_seconds, machine_cpu_seconds, settle, tree_of
from tests.bench.report import Section, now
from tests.cluster.cluster_tools import group_assignment
from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import ServiceProcess, free_port

SERVICES = ("registry", "ingest", "train", "evaluate")
PER_PARTITION = 2
ANALYSIS = """
Two train processes on two cores can at best double the rate; the search is single-threaded in
each (OMP/BLAS pinned to one thread), so the second replica adds a core's worth of fitting while
ingest, evaluate, the registry, Kafka and MinIO share the same two cores. A dead replica's
partitions move only when its session expires (aiokafka's default 10 s session time-out), not
when it dies; a clean stop (SIGTERM) leaves the group at once. Only train is replicated, so the
work must be train's: with a few large forests per arrival (150-300, then 300-600 trees) the one
evaluate replica, which loads and scores the winner and the champion, became the bottleneck and
two train replicas gained 1.44x, then 1.13x (2026-12-03, idle machine); with many small candidates
and a small winner the fitting dominates. Before train ran small searches in its own process,
every search paid for starting joblib's worker processes, which is what made the earlier, smaller
search CPU-bound. The rounds differ in more than the replicas: a pipeline's first version has no
champion for evaluate to score, so a first round is cheaper than the rounds after it (93 s with
champions against 76-79 s without, one replica, the same search), and a round measured first
against one measured second gave the ratio to that difference. Hence the unmeasured first round,
and the baseline on both sides of the two-replica round. Pure fitting, two processes against one
on this machine, scales 1.6-2.0x by itself (random forests on the same data, 12 fits each), so
the round-to-round noise of a shared VM is as large as the margin over the goal. The CPU seconds
per round say where a two-replica round's time goes: it keeps both cores busy (75 of its 78
core-seconds in the run of 2026-12-04 01:11 UTC), with the services other than train, Kafka and
MinIO taking 11 of them, and fitting itself costs more CPU than with one replica (64 against 58
core-seconds for the same searches then; 87 against 71 in the run of 00:47, when the ratio was
1.35x): the second vCPU of this VM does not always give a second core's worth. Evaluate now keeps
the models it loaded (a candidate is its pipeline's next champion), yet still used 3-4
core-seconds a round, as before: loading the champion was not where its time went. What the
rounds before 2026-12-04 04:50 UTC also measured was the second replica's start: a new train
process warms its search workers after it has joined the group (their start and imports, seconds
of CPU on both cores), and the two-replica round began the moment the group listed both
replicas, so the warm-up ran inside the measured round, while the one-replica baseline ran on
warm workers. Every round now starts once the services' process trees are quiet (the second
replica is warm 4-8 s after it joined; the join itself is measured above), and the two
replicas then gained 1.94x, 1.62x and 1.60x in three runs back to back, 1.62x and 1.60x on a
machine whose own two-process ceiling was 1.67x and 1.65x at the time. Tried on the way: one
search process per replica instead of one per core (CONVEYOR_TRAIN_N_JOBS=1): 44.9 and 39.2 s
against 37.5 and 43.9 s per two-replica round, no difference beyond the noise.
"""


def search_spec(name: str, *, quick: bool) -> PipelineSpec:
    """A random forest tuned by a 3-fold grid search: seconds of single-threaded CPU per arrival.

    Many small candidates (27, 81 fits, about 5 s on this machine when idle) and a small winner
    (at most 60 trees): fitting is what a second replica can share, while the services that run
    once (evaluate scores the winner and the champion) stay cheap. With a few large forests
    instead, evaluate became the bottleneck and the ratio measured it, not train.
    """
    space: dict[str, list[int]] = (
        {"n_estimators": [5, 10], "max_depth": [4], "min_samples_leaf": [1, 2]}
        if quick
        else {"n_estimators": [20, 40, 60], "max_depth": [4, 6, 8], "min_samples_leaf": [1, 2, 4]}
    )
    return PipelineSpec.from_mapping(
        {
            "name": name,
            "target": "target",
            "task": "classification",
            "estimator": {
                "path": "sklearn.ensemble.RandomForestClassifier",
                "search": {"space": space, "folds": 3},
            },
            "gates": [{"metric": "accuracy", "min": 0.5}],
            "approval": "auto",
            "deployment": {"realtime": False, "batch": False},
        }
    )


def spread_names(prefix: str, partitions: int) -> list[str]:
    """Pipeline names, ``PER_PARTITION`` for each partition (keys go to partitions by murmur2)."""
    ids = list(range(partitions))
    chosen: dict[int, list[str]] = {p: [] for p in ids}
    n = 0
    while any(len(names) < PER_PARTITION for names in chosen.values()):
        name = f"{prefix}-{n}"
        partition = DefaultPartitioner()(name.encode(), ids, ids)
        if len(chosen[partition]) < PER_PARTITION:
            chosen[partition].append(name)
        n += 1
    return [name for names in chosen.values() for name in names]


@dataclass
class Stack:
    """The services as processes, their settings and environment, and a watcher of every topic."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, ServiceProcess]
    watcher: EventWatcher
    specs: SpecStore


async def _start(context: BenchContext) -> Stack:
    tag = f"{context.run_id}-scale"
    settings = context.settings.model_copy(
        update={
            "consumer_group_prefix": f"bench-{tag}",
            "registry_port": free_port(),
            "state_dir": context.scratch("scaling-state"),
            "artifacts_bucket": f"bench-art-{tag}",
            "landing_bucket": f"bench-land-{tag}",
        }
    )
    env = context.service_env(
        state_dir=settings.state_dir,
        CONVEYOR_CONSUMER_GROUP_PREFIX=settings.consumer_group_prefix,
        CONVEYOR_REGISTRY_PORT=str(settings.registry_port),
        CONVEYOR_ARTIFACTS_BUCKET=settings.artifacts_bucket,
        CONVEYOR_LANDING_BUCKET=settings.landing_bucket,
    )
    names = [event.topic for event in ALL_EVENTS]
    await ensure_topics(settings, names)
    for name in SERVICES:  # new groups skip what was published before this run
        await start_group_at_end(settings, group_id=f"{settings.consumer_group_prefix}-{name}", topics=names)
    watcher = EventWatcher(settings, names)
    await watcher.start()
    store = ArtifactStore.from_settings(settings)
    await asyncio.to_thread(store.ensure_buckets)
    log_dir = context.scratch("scaling-logs")
    stack = Stack(settings, env, log_dir, {}, watcher, SpecStore(store, bucket=settings.artifacts_bucket))
    try:
        for name in SERVICES:
            url = f"{settings.registry_base_url}/health/ready" if name == "registry" else None
            process = ServiceProcess(name, env=env, log_dir=log_dir, ready_url=url)
            stack.processes[name] = process
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


@dataclass(frozen=True)
class Round:
    """One round's wall seconds and the CPU seconds each service (its worker processes included) used."""

    seconds: float
    cpu: dict[str, float]
    # Seconds train reported fitting (ModelTrained.training_seconds), summed over the round.
    fitting: float

    def cpu_note(self) -> str:
        used = ", ".join(f"{name} {seconds:.0f}" for name, seconds in self.cpu.items())
        return f"{used} (fitting {self.fitting:.0f})"


async def _round(stack: Stack, names: list[str], *, seed: int) -> Round:
    """Seconds from publishing one arrival per pipeline until every one is registered."""
    data = breast_cancer(seed=seed).to_csv(index=False).encode()
    children = children_of()
    meter = CpuMeter(
        {
            name: tree_of(process.process.pid, children)
            for name, process in stack.processes.items()
            if process.process is not None
        }
    )
    machine, bench = machine_cpu_seconds(), cpu_seconds([os.getpid()])
    began = time.perf_counter()
    arrivals = await asyncio.gather(
        *(publish_data_arrival(stack.settings, pipeline=n, data=data, filename="bc.csv") for n in names)
    )
    for arrival in arrivals:
        await stack.watcher.wait_for(ModelRegistered, correlation_id=arrival.correlation_id, timeout=900)
    seconds = time.perf_counter() - began
    used = meter.used()
    used["this bench"] = cpu_seconds([os.getpid()]) - bench  # its threads; the services are counted above
    # Kafka and MinIO, mostly.
    used["all other processes"] = machine_cpu_seconds() - machine - sum(used.values())
    fitted = [stack.watcher.events(ModelTrained, correlation_id=a.correlation_id) for a in arrivals]
    return Round(seconds, used, fitting=sum(found[0].training_seconds for found in fitted if found))


def _pids(stack: Stack) -> list[int]:
    """The services' pids, those still running."""
    running = (p.process for p in stack.processes.values() if p.process is not None)
    return [process.pid for process in running if process.poll() is None]


async def _members(stack: Stack) -> dict[int, set[int]]:
    """Each train replica's pid and the DatasetValidated partitions it holds."""
    group = f"{stack.settings.consumer_group_prefix}-train"
    return await group_assignment(stack.settings, group=group, topic=topics.DATASET_VALIDATED)


async def _until(
    stack: Stack, condition: Callable[[dict[int, set[int]]], bool], *, timeout: float = 120
) -> float:
    began = time.perf_counter()
    while not condition(await _members(stack)):
        if time.perf_counter() - began > timeout:
            raise TimeoutError("the train group did not settle")
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


def _searches(count: int) -> float:
    """Seconds for ``count`` of the bench's searches, one after another, in this process."""
    spec, frame = search_spec("machine", quick=False), breast_cancer(seed=0)
    began = time.perf_counter()
    for _ in range(count):
        fit_with_search(spec, frame, n_jobs=1)
    return time.perf_counter() - began


def machine_scaling(*, searches: int) -> float:
    """How many times the searches two processes finish in a time one process needs, on this machine now.

    The ceiling of the replicas' ratio: fitting alone, without the services, Kafka or MinIO.
    """
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_searches, [1, 1]))  # both processes imported and warm
        one = pool.submit(_searches, searches).result()
        began = time.perf_counter()
        list(pool.map(_searches, [searches, searches]))
        two = time.perf_counter() - began
    return (2 * searches / two) / (searches / one)


async def run(context: BenchContext) -> Section:
    """One train replica, then two, on the same rounds; then a join and a death."""
    started = time.perf_counter()
    ceiling = await asyncio.to_thread(machine_scaling, searches=1 if context.quick else 2)
    stack = await _start(context)
    partitions = stack.settings.kafka_partitions
    names = spread_names(f"bench-scale-{context.run_id}", partitions)
    try:
        for name in names:
            await asyncio.to_thread(stack.specs.apply, search_spec(name, quick=context.quick))
        # Unmeasured: it gives every pipeline a champion, so that each measured round's evaluations
        # score the candidate and the champion alike (a first version has none to score).
        await _round(stack, names, seed=0)
        await settle(_pids(stack))
        one_round = await _round(stack, names, seed=1)

        second = ServiceProcess("train", label="train-2", env=stack.env, log_dir=stack.log_dir)
        stack.processes["train-2"] = second
        spawned = time.perf_counter()
        starting = asyncio.create_task(asyncio.to_thread(second.start, timeout=120))
        await _until(stack, lambda m: len(m) == 2 and all(m.values()), timeout=180)
        joined = time.perf_counter() - spawned
        await starting
        # The new replica warms its search workers after it has joined (seconds of imports); the
        # first replica's were warm for the baseline, so the second's are too before it is measured.
        warmed = await settle(_pids(stack))
        two_round = await _round(stack, names, seed=2)

        await asyncio.to_thread(second.kill)
        died = await _until(stack, lambda m: len(m) == 1 and sum(map(len, m.values())) == partitions)
        # One replica again: the baseline brackets the two-replica round, so neither the first
        # round's cold processes nor a drift of the machine's load over the run favours a side.
        await settle(_pids(stack))
        again_round = await _round(stack, names, seed=3)
    finally:
        await _stop(stack)
    arrivals = len(names)
    one, two, again = one_round.seconds, two_round.seconds, again_round.seconds
    section = Section(
        key="scaling",
        title="7. Scaling out by consumer group (train replicas, rebalances)",
        method=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip(),
        quick=context.quick,
    )
    rate_one, rate_two = arrivals / ((one + again) / 2) * 60, arrivals / two * 60
    section.add(
        "arrivals per minute, 2 train replicas vs 1",
        rate_two,
        rate_one,
        unit="/min",
        target="≥ 1.6x",
        met=rate_two / rate_one >= 1.6,
        digits=1,
    )
    section.add("a replica joins: spawn → both hold partitions", joined, None, unit="s", digits=1)
    section.add("a replica is SIGKILLed → the survivor holds all", died, None, unit="s", digits=1)
    section.notes.append(
        f"{arrivals} arrivals per round over {partitions} partitions; rounds of {one:.0f} s (one replica), "
        f"{two:.0f} s (two), then {again:.0f} s (one again, after the SIGKILL); the baseline is the mean "
        "of the two one-replica rounds. Each round starts once the services' process trees use under a "
        f"quarter of a core for a second: {warmed:.0f} s after the second replica had joined, while it "
        "warmed its search workers"
    )
    section.notes.append(
        f"The same searches in two processes against one, nothing else running (the ceiling of the ratio "
        f"on this machine at this time): {ceiling:.2f}x"
    )
    section.notes.append(
        "CPU seconds per round (the services' process trees, then the rest of the machine): "
        f"one replica {one_round.cpu_note()}; two {two_round.cpu_note()}; one again {again_round.cpu_note()}"
    )
    section.analysis = ANALYSIS
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section
