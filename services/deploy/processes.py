"""The processes the deploy service starts, tagged so that every one of them can be found and stopped by pid.

A child may start processes of its own, possibly in sessions of their own, that neither a
process group nor the parent's death reaches. Every child is therefore started with an
environment tag (``CONVEYOR_DEPLOY_PROCESS=<run dir>::<name>``) that its own children inherit:
stopping a child stops every live process carrying its tag, and a restarted deploy service stops
whatever carries its run directory's tag (what a hard kill left behind). Children also get
``PR_SET_PDEATHSIG``, so they are told to stop when the deploy service dies. Nothing is ever
stopped by name, and only processes carrying our tag are ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("conveyor.deploy.processes")

TAG = "CONVEYOR_DEPLOY_PROCESS"
_PR_SET_PDEATHSIG = 1
_POLL_S = 0.05
_KILL_WAIT_S = 5.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(eq=False)
class Child:
    """One started process, and the tag it and its descendants carry."""

    name: str
    tag: str
    process: asyncio.subprocess.Process = field(repr=False)
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id of the started process itself."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether the started process has not exited."""
        return self.process.returncode is None


class ProcessBook:
    """Starts children, records their pids, and stops them (with their descendants) by pid."""

    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir.resolve()
        self._pids = run_dir / "pids"
        self._logs = run_dir / "logs"
        self._children: list[Child] = []

    @property
    def tag_prefix(self) -> str:
        """The tag every process started from this run directory carries."""
        return f"{self._run_dir}::"

    async def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        pass_fds: Sequence[int] = (),
    ) -> Child:
        """Start ``argv`` with its output appended to ``logs/<name>.log``, and record its pid.

        ``pass_fds`` are handed down open (a listening socket the child serves on).
        """
        self._pids.mkdir(parents=True, exist_ok=True)
        self._logs.mkdir(parents=True, exist_ok=True)
        log_path = self._logs / f"{name}.log"
        tag = f"{self.tag_prefix}{name}"
        with log_path.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env={**env, TAG: tag},
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                pass_fds=tuple(pass_fds),
            )
        (self._pids / f"{name}.pid").write_text(str(process.pid))
        child = Child(name=name, tag=tag, process=process, log_path=log_path)
        self._children.append(child)
        log.info("started %s (pid %d)", name, process.pid)
        return child

    def rename(self, child: Child, name: str) -> None:
        """Record ``child`` under another name (a spare worker that became an endpoint's); its tag stays."""
        (self._pids / f"{child.name}.pid").unlink(missing_ok=True)
        child.name = name
        (self._pids / f"{name}.pid").write_text(str(child.pid))

    async def stop(self, child: Child, *, timeout_s: float) -> None:
        """SIGTERM the child and wait for it; then SIGKILL anything still carrying its tag."""
        if child.alive:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), timeout=timeout_s)
            except TimeoutError:
                log.warning("%s (pid %d) did not stop in %.0fs; killing it", child.name, child.pid, timeout_s)
        killed = await asyncio.to_thread(kill_tagged, child.tag, exact=True)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            await child.process.wait()
        (self._pids / f"{child.name}.pid").unlink(missing_ok=True)
        if child in self._children:
            self._children.remove(child)
        log.info("stopped %s (pid %d%s)", child.name, child.pid, f"; killed {killed}" if killed else "")

    async def stop_all(self, *, timeout_s: float) -> None:
        """Stop every child still recorded (those a cancelled start never handed over, say)."""
        for child in list(self._children):
            await self.stop(child, timeout_s=timeout_s)

    def sweep(self) -> list[int]:
        """Kill whatever an earlier run from this directory left alive; return those pids."""
        swept = kill_tagged(self.tag_prefix, exact=False)
        for pidfile in self._pids.glob("*.pid") if self._pids.exists() else ():
            pidfile.unlink(missing_ok=True)
        if swept:
            log.warning("stopped processes left by an earlier run: %s", swept)
        return swept


def tagged(tag: str, *, exact: bool) -> list[int]:
    """Live processes whose tag equals ``tag`` (or, not exact, starts with it)."""
    found = []
    for entry in Path("/proc").iterdir():
        value = _tag_of(entry) if entry.name.isdigit() else None
        if value is not None and (value == tag if exact else value.startswith(tag)) and not _zombie(entry):
            found.append(int(entry.name))
    return found


def kill_tagged(tag: str, *, exact: bool) -> list[int]:
    """SIGKILL every live process carrying ``tag`` and wait (briefly) until they are gone."""
    pids = tagged(tag, exact=exact)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _KILL_WAIT_S
    while pids and tagged(tag, exact=exact) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    return pids


def log_tail(path: Path, *, lines: int = 20) -> str:
    """The last lines of a child's log, for error messages."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _tag_of(entry: Path) -> str | None:
    try:
        environ = (entry / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return None
    marker = f"{TAG}=".encode()
    for variable in environ.split(b"\0"):
        if variable.startswith(marker):
            return variable[len(marker) :].decode(errors="replace")
    return None


def _zombie(entry: Path) -> bool:
    try:
        # "pid (comm) state ...": the command may hold spaces and parentheses.
        return (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True
