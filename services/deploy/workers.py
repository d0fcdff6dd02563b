"""How serving workers are started: their command, environment, socket, and spares started ahead of need."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.deploy.processes import Child, ProcessBook
from services.deploy.serving.control import ASSIGNMENTS_FILE
from services.deploy.settings import DeploySettings

log = logging.getLogger("conveyor.deploy.workers")

SERVICE = "services.deploy.serving.service:PredictionService"
POOL_SERVICE = "services.deploy.serving.pool_service:PoolService"
# BentoML's HTTP worker: what `bentoml serve` runs under its arbiter, once per worker, on a socket fd.
BENTOML_WORKER = "_bentoml_impl.worker.service"
_BACKLOG = 2048  # BentoML's default
_METRICS_DIR = "prometheus_multiproc_dir"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Longer than what clients commonly keep idle connections for, so a worker does not close first.
SERVER_KEEPALIVE_S = 65
SERVER_WITHHELD = frozenset({"CONVEYOR_MINIO_ACCESS_KEY", "CONVEYOR_MINIO_SECRET_KEY", "CONVEYOR_API_TOKENS"})
_HAND_OVER_TIMEOUT_S = 5.0
SPARE = "services.deploy.serving.spare"
_POLL_S = 0.05


class ServingError(Exception):
    """An endpoint could not be started or switched to a version; what was serving keeps serving."""


def worker_command(
    *, fd: int, worker_id: int, arguments: Mapping[str, str], service: str = SERVICE
) -> list[str]:
    """One BentoML HTTP worker of ``service``, serving on the inherited listening socket ``fd``."""
    argv = worker_arguments(worker_id=worker_id, arguments=arguments, service=service)
    return [sys.executable, "-m", BENTOML_WORKER, *argv, "--fd", str(fd)]


def worker_arguments(*, worker_id: int, arguments: Mapping[str, str], service: str = SERVICE) -> list[str]:
    """BentoML's worker arguments for ``service`` (the prediction service), but the socket's fd."""
    return [
        service,
        "--worker-id", str(worker_id),
        "--args", json.dumps(dict(arguments)),
        "--timeout-keep-alive", str(SERVER_KEEPALIVE_S),
    ]  # fmt: skip


def server_home(settings: DeploySettings, name: str) -> Path:
    """A BentoML home of the server's own that shares the model store, with empty metrics files.

    The workers of a server add up their Prometheus counters in ``<home>/prometheus_multiproc_dir``
    (emptied here, as ``bentoml serve`` empties it); with one home for all servers, starting the
    new version would wipe the metrics of the one still draining.
    """
    home = settings.run_dir / "homes" / name
    metrics = home / _METRICS_DIR
    shutil.rmtree(metrics, ignore_errors=True)
    (home / ASSIGNMENTS_FILE).unlink(missing_ok=True)  # a fresh start learns them again
    metrics.mkdir(parents=True)
    models = settings.bentoml_home / "models"
    models.mkdir(parents=True, exist_ok=True)
    link = home / "models"
    if not link.is_symlink():
        link.symlink_to(models, target_is_directory=True)
    return home


def settings_environment(settings: DeploySettings) -> dict[str, str]:
    """This process's environment with every setting written out as its CONVEYOR_* variable."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        secret = getattr(value, "get_secret_value", None)
        env[f"CONVEYOR_{name.upper()}"] = str(secret() if secret else value)
    return env


def server_environment(settings: DeploySettings, *, home: Path | None = None) -> dict[str, str]:
    """What a BentoML server runs with: the settings but no credentials, BentoML's home, no telemetry.

    Servers read their model from the local BentoML store and publish to Kafka only: they get
    neither the object store's keys nor the API tokens.
    """
    env = {k: v for k, v in settings_environment(settings).items() if k not in SERVER_WITHHELD}
    env["BENTOML_HOME"] = str(home or settings.bentoml_home)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(env["BENTOML_HOME"]) / _METRICS_DIR)
    env["BENTOML_DO_NOT_TRACK"] = "True"
    return env


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def can_listen(host: str, port: int) -> bool:
    """Whether a listener could bind host:port now.

    Stricter than ``not port_in_use``: a client socket's local port (one the kernel handed out
    from its ephemeral range) blocks a bind without accepting connections.
    """
    try:
        listen(host, port).close()
    except ServingError:
        return False
    return True


def listen(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(_BACKLOG)
    except OSError as error:
        listener.close()
        raise ServingError(f"cannot listen on {host}:{port}: {error}") from error
    return listener


def socket_dir(run_dir: Path) -> Path:
    # A short private directory of its own (mode 0700: only this user reaches the control sockets).
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"conveyor-{os.getuid()}-{digest}"
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


class Spares:
    """Workers started ahead of need, their imports done, each waiting to become an endpoint's worker."""

    def __init__(self, settings: DeploySettings, processes: ProcessBook) -> None:
        self._settings = settings
        self._processes = processes
        self._waiting: list[tuple[Child, Path]] = []
        self._count = 0
        self._starting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the configured number of spares (they import in the background)."""
        for _ in range(self._settings.serving_spare_workers - len(self._waiting)):
            await self._spawn()

    def waiting(self) -> list[tuple[Child, Path]]:
        """The spares not taken yet, with the socket each listens on once its imports are done."""
        return list(self._waiting)

    async def adopt(self, name: str, *, argv: list[str], env: Mapping[str, str], fd: int) -> Child | None:
        """A spare become worker ``name`` on socket ``fd``, or None when there is no spare.

        A spare still importing is waited for: it is ahead of any process started now, and a
        second process importing beside it would only slow both down.
        """
        while self._waiting:
            child, path = self._waiting.pop(0)
            if not await self._until_listening(child, path):
                await self._processes.stop(child, timeout_s=self._settings.serving_stop_timeout_s)
                continue
            # It runs with the servers' settings already; what differs is the endpoint's home.
            own = {k: v for k, v in env.items() if k.startswith(("BENTOML_", "PROMETHEUS_"))}
            try:
                await asyncio.to_thread(
                    hand_over, path, order={"argv": argv, "env": own}, fd=fd, timeout_s=_HAND_OVER_TIMEOUT_S
                )
            except OSError as error:
                log.warning("spare %s could not take %s (%s); stopping it", child.name, name, error)
                await self._processes.stop(child, timeout_s=self._settings.serving_stop_timeout_s)
                continue
            self._processes.rename(child, name)
            self._replenish()
            return child
        return None

    async def _until_listening(self, child: Child, path: Path) -> bool:
        deadline = asyncio.get_running_loop().time() + self._settings.serving_ready_timeout_s
        while child.alive and not path.exists():
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return child.alive

    async def stop(self) -> None:
        """Stop the spares still waiting."""
        for task in list(self._starting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for child, path in self._waiting:
            await self._processes.stop(child, timeout_s=self._settings.serving_stop_timeout_s)
            path.unlink(missing_ok=True)
        self._waiting.clear()

    def _replenish(self) -> None:
        task = asyncio.create_task(self.start())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _spawn(self) -> None:
        self._count += 1
        name = f"spare-{self._count}"
        path = socket_dir(self._settings.run_dir) / f"{name}.sock"
        path.unlink(missing_ok=True)
        argv = [sys.executable, "-m", SPARE, str(path)]
        env = server_environment(self._settings)
        child = await self._processes.spawn(name, argv, env=env, cwd=PROJECT_ROOT)
        self._waiting.append((child, path))


def hand_over(path: Path, *, order: dict[str, Any], fd: int, timeout_s: float) -> None:
    """Give the spare on ``path`` an endpoint's socket ``fd`` with its worker ``order``; raises OSError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(str(path))
        socket.send_fds(connection, [json.dumps(order).encode()], [fd])
        if connection.recv(2) != b"ok":
            raise OSError(f"the spare worker at {path} did not take the endpoint")
