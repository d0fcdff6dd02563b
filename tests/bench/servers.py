"""The endpoints the serving benchmarks compare, all serving one fitted model with one worker each.

- ``conveyor``: the pipeline's stable endpoint (its BentoML worker on the pipeline's port, no hop),
  deployed through the deploy service by a ModelApproved, as in production.
- ``conveyor-unbatched``: Conveyor's server with its adaptive batching off (throughput only).
- ``starlette``: the model behind a bare Starlette route under uvicorn (``bare_server``).
- ``mlflow``: ``mlflow models serve`` of the same model, from the benchmark's own environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from services.deploy.serving.model_store import model_tag
from services.deploy.workers import server_environment
from tests.bench.deploy_stack import DeployStack
from tests.bench.harness import (
    ROOT,
    SINGLE_THREADED,
    BenchContext,
    Started,
    bench_env,
    http_ok,
    python_module,
    start,
    wait_until,
)
from tests.bench.load import Target
from tests.bench.mlflow_env import BenchVenv
from tests.bench.models import Fitted, Kind, bodies, fitted
from tests.integration.deploy.fixtures import model_artifact
from tests.integration.processes import free_port

WORKERS = 1


@dataclass
class ServingSet:
    """One model served every way compared, with the pids that do the work."""

    kind: Kind
    fitted: Fitted
    targets: dict[str, Target] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)
    started: list[Started] = field(default_factory=list)
    mlflow_problem: str | None = None

    def stop(self) -> None:
        """Stop the baselines (the deploy service stops Conveyor's servers)."""
        for process in self.started:
            with contextlib.suppress(Exception):
                process.stop()


async def serve_everywhere(
    context: BenchContext, stack: DeployStack, *, kind: Kind, venv: BenchVenv | None, venv_problem: str | None
) -> ServingSet:
    """Deploy ``kind`` through Conveyor and start its baselines; returns once all of them answer."""
    model = fitted(kind, f"bench-{kind}-{context.run_id}")
    served = ServingSet(kind=kind, fitted=model, mlflow_problem=venv_problem)
    one_row = bodies(model.data)
    endpoint = await stack.deploy(model)
    served.targets["conveyor"] = Target("conveyor", f"{endpoint}/v1/predict", one_row)
    served.pids["bentoml"] = stack.server_pids(urlsplit(endpoint).port or 80)
    served.pids["deploy service"] = [stack.service.process.pid] if stack.service.process else []

    folder = context.scratch(f"serving-{kind}")
    skops_file = folder / "model.skops"
    skops_file.write_bytes(model_artifact(model.model))
    logs = context.scratch("logs")
    try:
        bare = await _start_bare(skops_file, logs=logs, kind=kind)
        served.started.append(bare)
        served.targets["starlette"] = Target("starlette", f"{bare.url}/predict", one_row)
        served.pids["starlette"] = [bare.pid]
        if venv is not None and venv_problem is None:
            try:
                mlflow = await _start_mlflow(venv, skops_file, folder=folder, logs=logs, kind=kind)
            except (RuntimeError, TimeoutError, OSError) as error:
                served.mlflow_problem = f"mlflow models serve did not start: {error}"[:600]
            else:
                served.started.append(mlflow)
                wrapped = bodies(model.data, wrap="dataframe_records")
                served.targets["mlflow"] = Target("mlflow", f"{mlflow.url}/invocations", wrapped)
                served.pids["mlflow"] = [mlflow.pid, *_children(mlflow.pid)]
    except BaseException:
        served.stop()
        raise
    return served


async def _start_bare(skops_file: Path, *, logs: Path, kind: Kind) -> Started:
    port = free_port()
    argv = python_module(
        "uvicorn", "tests.bench.bare_server:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS),
        "--no-access-log", "--log-level", "warning",
    )  # fmt: skip
    env = bench_env({"BENCH_MODEL_PATH": str(skops_file)})
    process = start(f"starlette-{kind}", argv, env=env, log_dir=logs, url=f"http://127.0.0.1:{port}")
    await wait_until(http_ok(f"http://127.0.0.1:{port}/ready"), timeout_s=60, what="starlette", alive=process)
    return process


async def _start_mlflow(
    venv: BenchVenv, skops_file: Path, *, folder: Path, logs: Path, kind: Kind
) -> Started:
    model_dir = folder / "mlflow-model"
    if not model_dir.exists():
        await asyncio.to_thread(venv.export_model, skops_file, model_dir)
    port = free_port()
    argv = venv.serve_argv(model_dir, port=port, workers=WORKERS)
    # mlflow execs ``uvicorn`` by name: the environment's bin directory goes first on PATH.
    path = f"{venv.bin('python').parent}:{os.environ.get('PATH', '')}"
    env = bench_env({"MLFLOW_TRACKING_URI": f"file://{folder / 'mlruns'}", "PATH": path})
    process = start(f"mlflow-{kind}", argv, env=env, log_dir=logs, url=f"http://127.0.0.1:{port}")
    await wait_until(http_ok(f"http://127.0.0.1:{port}/ping"), timeout_s=120, what="mlflow", alive=process)
    return process


def _children(pid: int) -> list[int]:
    """Descendants of ``pid`` (mlflow execs uvicorn in a child)."""
    found: list[int] = []
    for task in Path("/proc").iterdir():
        if not task.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(task.name))
    return found + [grandchild for child in found for grandchild in _children(child)]


def worker_pid(pids: list[int]) -> int | None:
    """The BentoML worker among a server's processes (the one running the service)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"_bentoml_impl.worker" in cmdline:
                return pid
    return pids[-1] if pids else None


async def start_unbatched(context: BenchContext, stack: DeployStack, served: ServingSet) -> Started:
    """The same Conveyor server with adaptive batching off; adds its target."""
    port = free_port()
    argv = python_module(
        "bentoml", "serve", "services.deploy.serving.service:PredictionService",
        "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(ROOT),
        "--arg", f"model_tag={model_tag(served.fitted.spec.name, 1)}",
        "--arg", f"correlation_id={uuid.uuid4()}",
    )  # fmt: skip
    env = {**server_environment(stack.settings), **SINGLE_THREADED, "CONVEYOR_SERVING_BATCH_MAX_ROWS": "1"}
    process = start(
        f"unbatched-{served.kind}",
        argv,
        env=env,
        log_dir=context.scratch("logs"),
        url=f"http://127.0.0.1:{port}",
    )
    served.started.append(process)
    await wait_until(http_ok(f"{process.url}/readyz"), timeout_s=120, what="unbatched server", alive=process)
    bodies_ = served.targets["conveyor"].bodies
    served.targets["conveyor-unbatched"] = Target("conveyor-unbatched", f"{process.url}/v1/predict", bodies_)
    return process
