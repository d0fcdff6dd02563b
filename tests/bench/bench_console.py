"""The console at scale: its pipelines page and a model-group page with 1,000 pipelines and 10,000 versions.

The registry's journal is written straight through ``JournalStore`` (999 groups of 9 versions and
one of 1,009, so 10,000 versions), and each of the 1,000 pipelines publishes an arrival's events on
Kafka (a rejected dataset, a registered version and a drift check: topics no service consumes),
which the console reads from the beginning at its start. Then the registry and the console run as
processes and each page is asked for one request at a time, its time taken from the client (an
upper bound of the server's time).
Baselines, measured alternately in the same run: for the pipelines page, the console's own
`/health/live` (the HTTP floor of the same process); for a group page, the registry's list of that
group's versions (the read the page is built on).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from aiokafka import AIOKafkaProducer

from services.registry.journal_store import JournalStore
from shared.events import (
    ALL_EVENTS,
    DataArrived,
    DatasetRejected,
    DriftChecked,
    Event,
    ModelRegistered,
    RuleResult,
)
from shared.messaging import ensure_topics
from shared.storage import ArtifactStore, minio_client
from tests.bench.bench_registry import write_group
from tests.bench.harness import BenchContext, remove_bucket
from tests.bench.load import median, percentile
from tests.bench.report import Section, now
from tests.integration.processes import ServiceProcess, free_port

TARGET_MS = 300.0

ANALYSIS = """
Both pages are built from memory. The pipelines page comes from the console's own fold of the Kafka
topics (no call to another service), and its table is rendered once per revision of that fold rather
than per request, so a request between two events costs the page shell only. A group page costs the
registry's JSON for the whole version list parsed again in the console, with the shown version asked
for at the same time; the console renders 50 rows a page.
"""


def arrival_events(pipeline: str, *, version: int) -> list[Event]:
    """One arrival's events for ``pipeline``, on topics no service consumes.

    An arrival, a validation or an approval published here would be taken up by any Conveyor
    service running on the same Kafka (ingest, train, deploy): the bench must not start real work.
    So each pipeline's chain is a rejected dataset, a registered version and a drift check.
    """
    arrived = DataArrived.first(producer="bench", pipeline=pipeline, uri=f"s3://bench/{pipeline}.csv")
    rule = RuleResult(rule="bench", passed=False, message="a bench pipeline")
    rejected = DatasetRejected.caused_by(arrived, producer="ingest", source_uri=arrived.uri, failures=[rule])
    registered = ModelRegistered.caused_by(
        rejected, producer="registry", version=version, run_id="run", status="Approved"
    )
    drift = DriftChecked.caused_by(
        registered,
        producer="deploy",
        version=version,
        window_size=500,
        psi={"a": 0.05, "b": 0.3},
        threshold=0.2,
    )
    return [rejected, registered, drift]


async def publish(settings_bootstrap: str, events: list[Event], *, max_bytes: int) -> None:
    """Publish ``events`` as the services do: JSON, keyed by pipeline."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings_bootstrap, max_request_size=max_bytes, linger_ms=20
    )
    await producer.start()
    try:
        sent = [await producer.send(e.topic, e.model_dump_json().encode(), key=e.key) for e in events]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def run(context: BenchContext) -> Section:
    """Seed the registry and Kafka, start the registry and the console, time the pages."""
    started = time.perf_counter()
    settings = context.settings
    groups_n, versions_n = (100, 9) if context.quick else (1000, 9)
    big_versions = 10_000 - (groups_n - 1) * versions_n if not context.quick else 109
    run_tag = f"bench-con-{context.run_id}"
    pipelines = [f"{run_tag}-{index:04d}" for index in range(groups_n)]
    bucket = run_tag
    sum_versions = (groups_n - 1) * versions_n + big_versions
    section = Section(
        key="console",
        title=f"7. Console at scale: {groups_n:,} pipelines, {sum_versions:,} versions",
        method=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " ").strip(),
        quick=context.quick,
    )
    client = minio_client(settings)
    store = ArtifactStore(client, buckets=(bucket,))
    await asyncio.to_thread(store.ensure_buckets)
    try:
        began = time.perf_counter()
        journal = JournalStore(store, bucket=bucket)
        sizes = {p: versions_n for p in pipelines[1:]} | {pipelines[0]: big_versions}
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda p: write_group(journal, p, sizes[p]), pipelines))
        await asyncio.to_thread(journal.close)
        await ensure_topics(settings, [event.topic for event in ALL_EVENTS])
        events = [e for p in pipelines for e in arrival_events(p, version=sizes[p])]
        await publish(settings.bootstrap_servers, events, max_bytes=settings.kafka_max_message_bytes)
        section.notes.append(
            f"seeding: {2 * sum(sizes.values()):,} journal objects and {len(events):,} events in "
            f"{time.perf_counter() - began:.0f} s"
        )
        await _measure(context, section, bucket=bucket, pipelines=pipelines, big=pipelines[0])
    finally:
        await asyncio.to_thread(remove_bucket, client, bucket)
    section.analysis = ANALYSIS
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section


async def _measure(
    context: BenchContext, section: Section, *, bucket: str, pipelines: list[str], big: str
) -> None:
    registry_port, console_port = free_port(), free_port()
    env = context.service_env(
        state_dir=context.scratch("console-state"),
        CONVEYOR_ARTIFACTS_BUCKET=bucket,
        CONVEYOR_REGISTRY_PORT=str(registry_port),
        CONVEYOR_CONSOLE_PORT=str(console_port),
        CONVEYOR_CONSUMER_GROUP_PREFIX=f"bench-con-{context.run_id}",
    )
    registry_url, console_url = f"http://127.0.0.1:{registry_port}", f"http://127.0.0.1:{console_port}"
    logs = context.scratch("logs")
    processes = [
        ServiceProcess("registry", env=env, log_dir=logs, ready_url=f"{registry_url}/health/ready"),
        ServiceProcess("console", env=env, log_dir=logs, ready_url=f"{console_url}/health/ready"),
    ]
    for process in processes:
        await asyncio.to_thread(process.start, timeout=300)
    try:
        count = 30 if context.quick else 200
        small = pipelines[len(pipelines) // 2]
        pages = {
            "pipelines page": (console_url, "/", console_url, "/health/live"),
            "model-group page, 9 versions": (
                console_url, f"/groups/{small}", registry_url, f"/v1/groups/{small}/versions",
            ),
            "model-group page, the group of 1,009 versions": (
                console_url, f"/groups/{big}", registry_url, f"/v1/groups/{big}/versions",
            ),
        }  # fmt: skip
        async with httpx.AsyncClient(timeout=30) as http:
            rows = (await http.get(f"{console_url}/")).text.count("data-pipeline=")
            section.notes.append(
                f"the pipelines page lists {rows:,} pipelines (every pipeline in the topics)"
            )
            for measure, (url, path, base_url, base_path) in pages.items():
                ours, floor = await _alternate(http, url + path, base_url + base_path, count=count)
                p95 = percentile(ours, 95)
                section.add(
                    f"{measure}: p95", p95, percentile(floor, 95), unit="ms",
                    target=f"≤ {TARGET_MS:.0f} ms", met=p95 <= TARGET_MS,
                )  # fmt: skip
                section.add(f"{measure}: p50", median(ours), median(floor), unit="ms")
        section.notes.append(
            f"{count} sequential requests per page and per baseline, alternated in rounds of 10"
        )
    finally:
        for process in reversed(processes):
            await asyncio.to_thread(process.stop)


async def _alternate(
    http: httpx.AsyncClient, url: str, base: str, *, count: int
) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    floor: list[float] = []
    for target in (url, base):  # warm-up
        for _ in range(5):
            (await http.get(target)).raise_for_status()
    while len(ours) < count:
        for target, into in ((url, ours), (base, floor)):
            for _ in range(10):
                began = time.perf_counter()
                response = await http.get(target)
                into.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
    return ours, floor
