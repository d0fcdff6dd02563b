"""The deploy service as a real process, started, stopped and killed by pid as an operator would."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import signal
import subprocess
import sys
import time

import httpx

from services.deploy.processes import kill_tagged, tagged
from services.deploy.settings import DeploySettings
from services.deploy.workers import PROJECT_ROOT, settings_environment

# Stopped again at exit, as tests/integration/processes.py does for the other services.
_started: set[DeployProcess] = set()


class DeployProcess:
    """``python -m services.deploy`` with the given settings."""

    def __init__(self, settings: DeploySettings) -> None:
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = settings.state_dir / "deploy-service.log"

    @property
    def url(self) -> str:
        """The control API."""
        return self.settings.deploy_base_url

    async def start(self, *, timeout: float = 90.0) -> None:
        """Start the service and wait until it reports ready."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.deploy"],
                cwd=PROJECT_ROOT,
                env=settings_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _started.add(self)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, f"the deploy service exited:\n{self.log_tail()}"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        tail = self.log_tail()
        await self.kill()  # a service left running would take later tests' approvals
        raise AssertionError(f"the deploy service did not become ready:\n{tail}")

    async def stop(self, *, timeout: float = 60.0) -> None:
        """SIGTERM, and wait for a clean exit."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, timeout)
        self.process = None

    async def kill(self) -> None:
        """SIGKILL: the service gets no chance to stop its children itself."""
        if self.process is None:
            return
        self.process.kill()
        await asyncio.to_thread(self.process.wait, 10)
        self.process = None

    def recorded(self, prefix: str = "") -> dict[str, int]:
        """Pids of the endpoint workers the service recorded, by name (names starting with ``prefix``)."""
        pids = self.settings.run_dir / "pids"
        files = pids.glob(f"{prefix}*.pid") if pids.exists() else ()
        return {p.stem: int(p.read_text()) for p in files}

    def tag(self, name: str = "") -> str:
        """The tag the service's children carry (all of them, or the one named)."""
        return f"{self.settings.run_dir.resolve()}::{name}"

    def log_tail(self, lines: int = 60) -> str:
        """The end of the service's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def wait_gone(tag: str, *, exact: bool = False, timeout: float = 30.0) -> list[int]:
    """Wait until no process carries ``tag``; return the pids still alive at the end."""
    deadline = time.monotonic() + timeout
    while (alive := tagged(tag, exact=exact)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return alive


def cleanup(tag: str) -> None:
    """Last resort for a failed test: kill what still carries ``tag``."""
    kill_tagged(tag, exact=False)


@atexit.register
def _stop_left_running() -> None:
    for service in _started:
        if service.process is not None and service.process.poll() is None:
            service.process.terminate()  # the service stops its workers itself on SIGTERM
            try:
                service.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                service.process.kill()
