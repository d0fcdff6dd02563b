"""What every benchmark needs: settings, processes started and stopped by pid, polling, scratch buckets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from minio import Minio
from minio.deleteobjects import DeleteObject

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# One thread per numeric library everywhere: the machine is small and shared, and each server
# compared gets the same worker count and the same threads.
SINGLE_THREADED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BENTOML_DO_NOT_TRACK": "True",
}
# What `conveyor up` leaves them: every core (Arrow's thread pool, too, follows OMP_NUM_THREADS).
EVERY_CORE = {name: str(os.cpu_count() or 1) for name in SINGLE_THREADED if name.endswith("_THREADS")}


@dataclass(frozen=True)
class BenchContext:
    """Settings of the servers under test, the scratch directory, and how hard to push."""

    settings: Settings
    work_dir: Path
    quick: bool
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def scratch(self, name: str) -> Path:
        """A fresh directory of this run."""
        path = self.work_dir / self.run_id / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def service_env(self, *, state_dir: Path, every_core: bool = False, **settings: str) -> dict[str, str]:
        """What a service process of a bench stack runs with: single-threaded (or on ``every_core``,
        as the services run outside benchmarks), in ``state_dir``.

        A scratch state directory has no secrets.json, and a service's first start there would
        make up new keys that MinIO does not know: the stack's MinIO keys and tokens, explicitly.
        """
        env = {name: value for name, value in os.environ.items() if name.startswith("CONVEYOR_")}
        return {
            **env,
            **SINGLE_THREADED,
            **(EVERY_CORE if every_core else {}),
            "CONVEYOR_MINIO_ACCESS_KEY": self.settings.minio_access_key,
            "CONVEYOR_MINIO_SECRET_KEY": self.settings.minio_secret_key.get_secret_value(),
            "CONVEYOR_API_TOKENS": self.settings.api_tokens.get_secret_value(),
            "CONVEYOR_STATE_DIR": str(state_dir),
            **settings,
        }


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, single-threaded, plus ``extra``."""
    return {**os.environ, **SINGLE_THREADED, **(extra or {})}


@dataclass
class Started:
    """A process this benchmark started, in a session of its own (so its children share its group)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        """The id of the process started."""
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        """The end of its output."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, timeout_s: float = 20.0) -> None:
        """SIGTERM its process group (led by the pid started), then SIGKILL if it would not go."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Children that outlived the leader still carry its group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def start(name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path, url: str = "") -> Started:
    """Start ``argv`` in a new session, output in ``log_dir/<name>.log``; ``url`` is where it answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Started(name=name, process=process, log=log, url=url)


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``module`` with the project's interpreter."""
    return [sys.executable, "-m", module, *args]


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str,
    alive: Started | None = None,
    poll_s: float = 0.05,
) -> float:
    """Poll ``check`` until it holds; returns the seconds it took. Fails after ``timeout_s``."""
    started = time.perf_counter()
    while not await check():
        if alive is not None and alive.process.poll() is not None:
            raise RuntimeError(f"{alive.name} exited while waiting for {what}:\n{alive.log_tail()}")
        if time.perf_counter() - started > timeout_s:
            tail = alive.log_tail() if alive else ""
            raise TimeoutError(f"{what}: not within {timeout_s}s\n{tail}")
        await asyncio.sleep(poll_s)
    return time.perf_counter() - started


def http_ok(url: str) -> Callable[[], Awaitable[bool]]:
    """A check that ``GET url`` answers 2xx."""

    async def check() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(url)).is_success
        except httpx.TransportError:
            return False

    return check


def remove_bucket(client: Minio, bucket: str) -> None:
    """Empty and remove a scratch bucket (nothing else is ever removed)."""
    if not client.bucket_exists(bucket):
        return
    names = [obj.object_name for obj in client.list_objects(bucket, recursive=True) if obj.object_name]
    for start_at in range(0, len(names), 1000):
        errors = client.remove_objects(bucket, [DeleteObject(n) for n in names[start_at : start_at + 1000]])
        for error in errors:
            raise RuntimeError(f"could not remove {error}")
    client.remove_bucket(bucket)


def bench_settings() -> Settings:
    """The servers' settings from CONVEYOR_* variables."""
    return Settings()
