"""Where the time goes: CPU seconds per process, a sampling profile of a live server, in-process timings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")

# A sample belongs to the first category (in this order) that any frame of its stack matches: time in
# pandas under scikit-learn is the model's, time in pydantic under capture is capture's.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model (scikit-learn)", ("sklearn/", "scipy/", "joblib/", "threadpoolctl")),
    ("prediction capture, metrics", ("serving/monitor.py", "serving/capture.py", "serving/feedback.py",
                                     "prometheus_client/", "aiokafka/", "faststream/")),
    ("socket writes and reads (kernel)", ("selector_events.py",)),
    ("OpenTelemetry (BentoML's tracing middleware)", ("opentelemetry", "trace/__init__", "asgi/__init__",
                                                      "_semconv", "_decorator.py", "sampling.py")),
    ("pandas frames", ("pandas/",)),
    ("pydantic models", ("pydantic/", "pydantic_core")),
    ("conveyor request code", ("services/deploy/serving/",)),
    ("BentoML request path", ("_bentoml_impl/", "_bentoml_sdk/", "bentoml/")),
    ("HTTP server (uvicorn, starlette)", ("uvicorn/", "starlette/", "h11", "httptools", "anyio/")),
    ("aiohttp (proxy)", ("aiohttp/", "multidict/", "yarl/")),
    ("event loop, other", ()),
)  # fmt: skip


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (those that are gone count 0)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def children_of() -> dict[int, list[int]]:
    """Every process's children, by parent pid, from /proc."""
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            found.setdefault(parent, []).append(int(entry.name))
    return found


def tree_of(pid: int, children: dict[int, list[int]]) -> list[int]:
    """``pid`` and its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def machine_cpu_seconds() -> float:
    """CPU seconds this machine's processes kept a core busy since boot (user, nice, system, interrupts)."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) / _TICKS


class CpuMeter:
    """CPU seconds used by named groups of processes between two readings."""

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self._groups = dict(groups)
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        return {name: cpu_seconds(pids) for name, pids in self._groups.items()}

    def used(self) -> dict[str, float]:
        """CPU seconds per group since the meter was made."""
        now = self._read()
        return {name: now[name] - self._start[name] for name in self._groups}


def time_call(call: Callable[[], object], *, repeat: int, warmup: int = 20) -> float:
    """Median wall time of ``call`` in microseconds."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples) * 1e6


def start_sampling(py_spy: Path, pid: int, *, duration_s: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` for ``duration_s`` without pausing it; collapsed stacks to ``output``."""
    return subprocess.Popen(
        [
            str(py_spy), "record", "--pid", str(pid), "--duration", str(duration_s),
            "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def categorize(collapsed: Path) -> dict[str, float]:
    """Share of the sampled (non-idle) time per category, from py-spy's collapsed stacks."""
    counts: Counter[str] = Counter()
    if not collapsed.exists():
        return {}
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        counts[_category(stack.split(";"))] += int(count)
    total = sum(counts.values())
    return {name: n / total for name, n in counts.most_common()} if total else {}


def _category(frames: list[str]) -> str:
    for name, markers in CATEGORIES:
        if any(marker in frame for frame in frames for marker in markers):
            return name
    return CATEGORIES[-1][0]


async def settle(pids: list[int], *, busy_cpu_s: float = 0.25, timeout_s: float = 120.0) -> float:
    """Wait until the process trees of ``pids`` use under ``busy_cpu_s`` in a second; the seconds waited."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        children = children_of()
        trees = [p for pid in pids for p in tree_of(pid, children)]
        meter = CpuMeter({"stack": trees})
        await asyncio.sleep(1.0)
        if meter.used()["stack"] < busy_cpu_s:
            break
    return time.perf_counter() - began
