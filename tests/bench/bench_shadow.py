"""Shadow mode's cost to callers: the same endpoint with and without a candidate scoring a copy.

Two pipelines on one deploy service, each one worker serving the same logistic regression: one
alone, one in a shadow release of a second version (the same model again, so the extra work is
one more model call and capture per request). The release's window never closes during the run.
Open-loop p50 at a steady rate and closed-loop throughput, the two endpoints alternated.
"""

from __future__ import annotations

import time

from shared.events import ReleaseStarted
from shared.pipeline_spec import PipelineSpec
from tests.bench.deploy_stack import DeployStack
from tests.bench.harness import BenchContext
from tests.bench.load import Target, closed_loop, median, open_loop
from tests.bench.models import Fitted, bodies, fitted
from tests.bench.report import Section, now
from tests.integration.deploy.fixtures import publish

P50_TARGET = 1.10  # shadowing adds at most 10 % to the caller's p50
RATE = 40.0  # requests per second: well inside one worker's capacity, so p50 is service time
# A shadow release that stays in its first window for the whole benchmark.
SHADOW = {"strategy": "shadow", "steps": 1, "interval_seconds": 86_400, "min_requests": 1}


async def run(context: BenchContext) -> Section:
    """p50 and throughput of an endpoint in shadow mode over the same endpoint alone."""
    started = time.perf_counter()
    rounds, count, seconds = (1, 200, 5.0) if context.quick else (3, 800, 15.0)
    section = Section(
        key="shadow",
        title="Shadow mode: the caller's cost of a candidate scoring a copy of every request",
        method=(
            f"Two endpoints of one worker each, logistic regression: alone, and in a shadow release "
            f"of a second version. Open loop at {RATE:g} req/s ({count} requests) for p50, closed loop "
            f"of 8 clients for {seconds:g} s for throughput; the endpoints alternated over {rounds} "
            "round(s), medians across rounds."
        ),
        quick=context.quick,
    )
    stack = await DeployStack.start(context, name="shadow")
    try:
        alone = await _serve(stack, f"shadow-off-{context.run_id}", shadowed=False)
        shadowed = await _serve(stack, f"shadow-on-{context.run_id}", shadowed=True)
        targets = {"alone": alone, "shadow": shadowed}
        for target in targets.values():  # warm both before anything counts
            await open_loop(target, rate=RATE, count=100, max_s=10)
        p50: dict[str, list[float]] = {name: [] for name in targets}
        rps: dict[str, list[float]] = {name: [] for name in targets}
        failures = 0
        for index in range(rounds):
            order = list(targets) if index % 2 == 0 else list(reversed(targets))
            for name in order:
                latency = await open_loop(targets[name], rate=RATE, count=count, max_s=count / RATE + 10)
                load = await closed_loop(targets[name], clients=8, duration_s=seconds, max_requests=100_000)
                p50[name].append(latency.percentile(50))
                rps[name].append(load.throughput)
                failures += latency.failures + load.failures
        on, off = median(p50["shadow"]), median(p50["alone"])
        section.add(
            "caller's p50, shadow vs alone", on, off, unit="ms", target=f"≤ {P50_TARGET}x",
            met=on <= P50_TARGET * off, digits=2,
        )  # fmt: skip
        on_rps, off_rps = median(rps["shadow"]), median(rps["alone"])
        section.add("throughput, shadow vs alone", on_rps, off_rps, unit="req/s", digits=1)
        section.notes.append(f"non-2xx answers or transport errors over the whole run: {failures}")
        section.analysis = (
            "The candidate scores on the same worker's event loop after the caller's answer is sent, "
            "so at a rate the worker keeps up with, the caller waits only for its own model; at "
            "saturation every request costs two model calls and two captures, and throughput falls "
            "by up to the candidate's share of the work."
        )
    finally:
        await stack.stop()
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section


async def _serve(stack: DeployStack, name: str, *, shadowed: bool) -> Target:
    """Version 1 serving (and version 2 in a shadow release beside it, if ``shadowed``)."""
    base = fitted("lr", "shadow-bench")
    spec = PipelineSpec.from_mapping(
        {**base.spec.model_dump(mode="json"), "name": name, "deployment": {"release": SHADOW}}
    )
    one = Fitted(kind="lr", spec=spec, model=base.model, data=base.data)
    url = await stack.deploy(one, version=1)
    if shadowed:
        await publish(stack.producer, await stack.approval(one, version=2))
        await stack.collector.wait_until(ReleaseStarted, pipeline=name, timeout=180)
    return Target(name=name, url=f"{url}/v1/predict", bodies=bodies(one.data))
