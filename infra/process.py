"""Detached server processes tracked by pidfile: spawn, await readiness, stop by recorded pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra import steps

STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.25

# Children spawned by this interpreter: polling them reaps their exit status (a dead child stays a
# zombie, which still answers kill(pid, 0)), and holding them stops Popen warning at garbage collection.
_children: dict[int, subprocess.Popen[bytes]] = {}


class InfraError(RuntimeError):
    """A server could not be built, started or stopped; the message says why and what to read."""


@dataclass(frozen=True)
class Server:
    """One local server: how to run it, where it writes, and how to tell it is ready."""

    name: str
    argv: Sequence[str]
    address: str
    ports: Sequence[tuple[str, int]]
    run_dir: Path
    output: Path
    ready: Callable[[], bool]
    # A string only our own process has on its command line (a path inside the state directory):
    # a recycled pid that now belongs to something else must never be signalled.
    marker: str
    prepare: Callable[[], None] = lambda: None
    env: Mapping[str, str] = field(default_factory=dict)
    log: Path | None = None

    @property
    def pidfile(self) -> Path:
        """Where the running server's process id is recorded."""
        return self.run_dir / f"{self.name}.pid"

    @property
    def logs(self) -> list[Path]:
        """The files to show when the server fails: its own log, then its raw output."""
        return [path for path in (self.log, self.output) if path is not None]


def wait_until(condition: Callable[[], bool], *, timeout: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie counts as exited)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # /proc/<pid>/stat reads "pid (command) state ..."; the command itself may hold ") ".
    stat = _proc_field(pid, "stat") or ""
    return stat.rpartition(")")[2].strip()[:1] != "Z"


def running_pid(server: Server) -> int | None:
    """The recorded pid if that process is alive and is our server; a stale pidfile is removed."""
    try:
        pid = int(server.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        pid = None
    if pid is not None and pid_alive(pid) and _is_ours(pid, server):
        return pid
    server.pidfile.unlink(missing_ok=True)
    return None


def start(server: Server, *, timeout: float) -> int:
    """Start the server unless it already runs, wait until it is ready, and return its pid."""
    with _lock(server):
        title = f"{server.name} on {server.address}"
        pid = running_pid(server)
        if pid is not None:
            _await_ready(server, pid, timeout=timeout)
            steps.done(title, f"already running (pid {pid})")
            return pid
        for host, port in server.ports:
            if port_open(host, port):
                raise InfraError(
                    f"{server.name}: port {host}:{port} is already in use by another process; "
                    "stop it or choose other ports (CONVEYOR_* settings)"
                )
        server.prepare()  # its own steps (a build, a download) print their own lines
        with steps.step(title):
            pid = _spawn(server)
            try:
                _await_ready(server, pid, timeout=timeout)
            except InfraError:
                if running_pid(server) is not None:  # alive but silent: do not leave it half-started
                    _terminate(server, quiet=True)
                raise
        return pid


def stop(server: Server, *, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the recorded process (SIGTERM, then SIGKILL); return whether one was running."""
    with _lock(server):
        return _terminate(server, timeout=timeout)


def require(tool: str) -> str:
    """The path of a command-line tool, or a clear error naming what is missing."""
    path = shutil.which(tool)
    if path is None:
        raise InfraError(f"`{tool}` is not on PATH; install it to run the local servers")
    return path


def run_build(
    argv: Sequence[str],
    *,
    what: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run a build step as one progress line, its whole output in ``log``; fail naming the log."""
    require(argv[0])
    try:
        steps.run_logged(argv, title=what, log=log, env=env, cwd=cwd)
    except steps.StepError as error:
        raise InfraError(str(error)) from None


def log_tail(paths: Sequence[Path], *, lines: int = 40) -> str:
    """The last lines of each non-empty log, headed by its path."""
    parts = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no log output)"


def _spawn(server: Server) -> int:
    """Launch the server in its own session, output appended to its log, and record its pid."""
    server.output.parent.mkdir(parents=True, exist_ok=True)
    server.run_dir.mkdir(parents=True, exist_ok=True)
    with server.output.open("ab") as output:
        # A new session detaches the server from this terminal: it outlives `make up`, and
        # Ctrl-C in the shell does not reach it.
        proc = subprocess.Popen(
            list(server.argv),
            env={**os.environ, **server.env},
            cwd=server.run_dir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    tmp = server.pidfile.with_suffix(".pid.tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(server.pidfile)
    return proc.pid


def _terminate(server: Server, *, timeout: float = STOP_TIMEOUT_S, quiet: bool = False) -> bool:
    """Signal the recorded pid and wait for it to exit; the caller holds the lock."""
    pid = running_pid(server)
    if pid is None:
        print(f"{server.name}: not running")
        return False
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not pid_alive(pid), timeout=timeout):
        print(f"{server.name}: still running {timeout:.0f}s after SIGTERM, sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=timeout)
    _children.pop(pid, None)
    server.pidfile.unlink(missing_ok=True)
    if not quiet:  # inside a start's progress line, the failure is what gets reported
        print(f"{server.name}: stopped (pid {pid})")
    return True


def _await_ready(server: Server, pid: int, *, timeout: float) -> None:
    """Return once the server answers; fail with its log tail if it exits or stays silent."""
    settled = wait_until(lambda: not pid_alive(pid) or server.ready(), timeout=timeout)
    if not pid_alive(pid):
        _children.pop(pid, None)
        server.pidfile.unlink(missing_ok=True)
        raise InfraError(f"{server.name} exited during start-up\n{log_tail(server.logs)}")
    if not settled:
        raise InfraError(
            f"{server.name} (pid {pid}) did not answer on {server.address} within {timeout:.0f}s\n"
            f"{log_tail(server.logs)}"
        )


def _is_ours(pid: int, server: Server) -> bool:
    """Whether the process is our server: spawned here, or its command line names our marker."""
    if pid in _children:
        return True  # checked before the child's exec, its command line is still ours or empty
    cmdline = _proc_field(pid, "cmdline")
    # Empty or unreadable means /proc cannot tell (or a kernel thread): trust the pidfile.
    return not cmdline or server.marker in cmdline.replace("\0", " ")


def _proc_field(pid: int, name: str) -> str | None:
    """The text of /proc/<pid>/<name>, or None where /proc cannot tell."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return None


@contextlib.contextmanager
def _lock(server: Server) -> Iterator[None]:
    """Serialise start and stop of one server, so two `make up` at once cannot start it twice."""
    server.run_dir.mkdir(parents=True, exist_ok=True)
    with (server.run_dir / f"{server.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
