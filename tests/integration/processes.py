"""Conveyor services run as real processes, as a user would run them, and stopped by pid."""

from __future__ import annotations

import atexit
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from services.deploy.workers import can_listen

ROOT = Path(__file__).resolve().parents[2]
STARTED_MESSAGE = "FastStream app started successfully"
# Every service this test run started, stopped again at exit: a session teardown cut short (an error
# that is no Exception stops pytest's remaining finalizers) must not leave a service running, which
# would go on to join a later run's consumer groups on the same broker port.
_started: set[ServiceProcess] = set()


class ServiceProcess:
    """One ``python -m services.<name>`` process with its own log file."""

    def __init__(
        self,
        name: str,
        *,
        env: Mapping[str, str],
        log_dir: Path,
        ready_url: str | None = None,
        label: str | None = None,
    ) -> None:
        self.name = name
        self.env = {**os.environ, **env, "BENTOML_DO_NOT_TRACK": "True"}
        # A second replica of a service logs under its own label (``registry-2``).
        self.log = log_dir / f"{label or name}.log"
        self.ready_url = ready_url
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the service and wait until it is consuming (or its HTTP readiness answers)."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _started.add(self)
        ready = self._http_ready if self.ready_url else lambda: STARTED_MESSAGE in self.log_text(offset)
        self._wait(ready, timeout=timeout, what="ready")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement of work in progress."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait, then SIGKILL if it would not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self, offset: int = 0) -> str:
        """What the service has logged (from ``offset``)."""
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def wait_for_log(self, text: str, *, timeout: float = 60.0) -> None:
        """Wait until the service logs ``text``."""
        self._wait(lambda: text in self.log_text(), timeout=timeout, what=f"log line {text!r}")

    def _http_ready(self) -> bool:
        assert self.ready_url is not None
        try:
            return httpx.get(self.ready_url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _wait(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}):\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not {what} within {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.1)


@atexit.register
def _stop_left_running() -> None:
    for service in _started:
        service.stop()


def free_port() -> int:
    """A TCP port a server can bind right now, below the ephemeral range (see ``free_port_range``)."""
    return free_port_range(1, low=10000, high=21000)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_EPHEMERAL_PORTS_LOW = _ephemeral_low()


def free_port_range(count: int, *, low: int, high: int) -> int:
    """The first of ``count`` consecutive loopback ports nothing listens on, somewhere in [low, high).

    Picked at random, so that test sessions and benchmarks running side by side rarely collide.
    The range must lie below the kernel's ephemeral ports: a client connection's local port taken
    from there between the pick and the bind fails the bind (EADDRINUSE).
    """
    ephemeral_low = _EPHEMERAL_PORTS_LOW
    if high > ephemeral_low:
        raise ValueError(f"ports up to {high} overlap the ephemeral range from {ephemeral_low}")
    for _ in range(50):
        base = random.randrange(low, high - count, count)
        if all(can_listen("127.0.0.1", port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} free ports in a row between {low} and {high}")
