"""Many pipelines from shared workers: memory per additional model, a cold model's first request,
and a hot model's p50 against a dedicated endpoint serving the same model.

One deploy service with one shared worker (``CONVEYOR_SERVING_POOL``), ``N`` pipelines (200; 20
quick) approved in a burst, each the platform's logistic regression on the breast-cancer data,
at most ``N / 2`` models loaded at once: the first half is unloaded by the time the last half has
loaded. Memory is the worker's resident set (``/proc``) with one model loaded and with ``N / 2``.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from shared.events import ModelDeployed
from shared.pipeline_spec import PipelineSpec
from tests.bench.deploy_stack import DeployStack
from tests.bench.harness import BenchContext
from tests.bench.load import Target, median, open_loop
from tests.bench.models import Fitted, bodies, fitted
from tests.bench.report import Section, now
from tests.integration.deploy.fixtures import publish
from tests.integration.processes import free_port

MB = 1024 * 1024
PER_MODEL_TARGET_MB = 25.0
COLD_OVERHEAD_TARGET_MS = 100.0
HOT_TARGET = 1.1  # a hot shared model's p50 against a dedicated endpoint's
RATE = 40.0


async def run(context: BenchContext) -> Section:
    """Memory per model, cold first request, hot p50, for N pipelines on one shared worker."""
    started = time.perf_counter()
    count = 20 if context.quick else 200
    section = Section(
        key="pool",
        title=f"Many models per machine: {count} pipelines on one shared worker",
        method=(
            f"{count} pipelines (logistic regression) approved in a burst to one deploy service whose "
            f"pipelines share one worker, at most {count // 2} models loaded; resident memory of that "
            "worker from /proc; a cold pipeline's first request against its load time as the worker "
            f"measured it; a hot pipeline's open-loop p50 at {RATE:g} req/s against a dedicated endpoint "
            "of the same model, alternated over 3 rounds."
        ),
        quick=context.quick,
    )
    stack = await DeployStack.start(
        context,
        name="pool",
        serving_pool=True,
        serving_pool_port=free_port(),
        serving_pool_max_models=count // 2,
        serving_pool_budget_mb=16_384,
    )
    try:
        base = fitted("lr", "pool-bench")
        names = [f"pool-{context.run_id}-{n}" for n in range(count)]
        first = await stack.deploy(_as(base, names[0]), version=1)
        body = bodies(base.data)[0]
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.post(f"{first}/v1/predict", content=body, headers=_JSON)).status_code == 200
            rss_one = _rss(stack)
            deploying = time.perf_counter()
            for name in names[1:]:
                await publish(stack.producer, await stack.approval(_as(base, name), version=1))
            urls = {names[0]: first}
            for name in names[1:]:
                found = await stack.collector.wait_until(ModelDeployed, pipeline=name, timeout=600)
                urls[name] = found[0].endpoint_url
            deploy_s = time.perf_counter() - deploying
            rss_full = _rss(stack)
            status = (await http.get(f"{stack.settings.deploy_base_url}/v1/shared-workers")).json()[0]
            loaded = len(status["loaded"])
            cold = names[0]  # unloaded long ago: least recently used
            assert cold not in status["loaded"], status["loaded"]
            began = time.perf_counter()
            answer = await http.post(f"{urls[cold]}/v1/predict", content=body, headers=_JSON)
            cold_ms = (time.perf_counter() - began) * 1000
            assert answer.status_code == 200, answer.text
            after = (await http.get(f"{stack.settings.deploy_base_url}/v1/shared-workers")).json()[0]
            load_ms = after["load_seconds"][cold] * 1000
        dedicated = await stack.deploy(_as(base, f"pool-{context.run_id}-own", workers="dedicated"))
        hot = Target("shared", f"{urls[names[-1]]}/v1/predict", bodies(base.data))
        own = Target("dedicated", f"{dedicated}/v1/predict", bodies(base.data))
        p50: dict[str, list[float]] = {"shared": [], "dedicated": []}
        for target in (hot, own):
            await open_loop(target, rate=RATE, count=100, max_s=10)
        for index in range(3):
            for target in (hot, own) if index % 2 == 0 else (own, hot):
                result = await open_loop(target, rate=RATE, count=200 if context.quick else 600, max_s=30)
                p50[target.name].append(result.percentile(50))

        per_model = (rss_full - rss_one) / MB / max(1, loaded - 1)
        section.add(
            "resident memory per additional loaded model", per_model, None, unit="MB",
            target=f"≤ {PER_MODEL_TARGET_MB:g} MB", met=per_model <= PER_MODEL_TARGET_MB, digits=2,
        )  # fmt: skip
        overhead = cold_ms - load_ms
        section.add(
            "cold model's first request, over its load time", overhead, None, unit="ms",
            target=f"≤ {COLD_OVERHEAD_TARGET_MS:g} ms", met=overhead <= COLD_OVERHEAD_TARGET_MS, digits=1,
        )  # fmt: skip
        shared_p50, own_p50 = median(p50["shared"]), median(p50["dedicated"])
        section.add(
            "hot shared model's p50 vs a dedicated endpoint", shared_p50, own_p50, unit="ms",
            target=f"≤ {HOT_TARGET}x", met=shared_p50 <= HOT_TARGET * own_p50,
        )  # fmt: skip
        section.notes += [
            f"worker RSS: {rss_one / MB:.0f} MB with one model, {rss_full / MB:.0f} MB with {loaded} loaded; "
            f"{status['loads']} loads and {status['unloads']} unloads while {count} pipelines were deployed",
            f"{count - 1} approvals to serving in {deploy_s:.1f} s "
            f"({(count - 1) / deploy_s:.1f} pipelines/s), each imported, proven for ONNX Runtime, "
            "loaded and warmed up",
            f"cold first request {cold_ms:.0f} ms, of which loading, verifying and warming up "
            f"{load_ms:.0f} ms",
        ]
        section.analysis = (
            "A loaded logistic regression holds a few hundred kB (its ONNX session, the warm-up rows, a "
            "monitor with bounded buffers); the worker's fixed cost (Python, BentoML, scikit-learn, ONNX "
            "Runtime) is paid once. A cold request waits for the model's load, digest check and warm-up, "
            "done in a thread while the worker keeps answering the others."
        )
    finally:
        await stack.stop()
    section.seconds = time.perf_counter() - started
    section.finished_at = now()
    return section


_JSON = {"content-type": "application/json"}


def _as(base: Fitted, name: str, *, workers: str = "default") -> Fitted:
    data = {**base.spec.model_dump(mode="json"), "name": name}
    data["deployment"] = {**data["deployment"], "workers": workers}
    return Fitted(kind=base.kind, spec=PipelineSpec.from_mapping(data), model=base.model, data=base.data)


def _rss(stack: DeployStack) -> int:
    # The worker's pid as the deploy service recorded it (a spare taken over keeps its process tag).
    pid = int((stack.settings.run_dir / "pids" / "endpoint-_shared-w1.pid").read_text())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for the shared worker {pid}")
