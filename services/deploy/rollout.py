"""Rolling a pipeline's endpoint to another model version: start, ready, switch, drain, stop.

Each pipeline has one stable endpoint, a router process on a port of its own. A new version gets
a new BentoML server on a free local port; once its /readyz answers, the router sends new
requests to it and waits for the requests still on the old server to finish; only then is the
old server stopped. A server that never becomes ready is stopped and the old one keeps serving.

A server is BentoML's HTTP workers, started here on a socket this process binds, as
``bentoml serve`` starts them under its circus arbiter. The arbiter is left out: it is one more
Python process that imports BentoML and the service module (sklearn, skops) only to bind the
socket and start the workers, about half of a server's start-up. Binding here also takes the
port before anything starts, and a readiness request waits in the socket's backlog until the
worker accepts, so it is answered the moment the server is ready. The router starts alongside.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from uuid import UUID

import httpx

from services.deploy.processes import Child, ProcessBook, log_tail
from services.deploy.router.client import RouterControl
from services.deploy.settings import DeploySettings

log = logging.getLogger("conveyor.deploy.rollout")

SERVICE = "services.deploy.serving.service:PredictionService"
# BentoML's HTTP worker: what `bentoml serve` runs under its arbiter, once per worker, on a socket fd.
BENTOML_WORKER = "_bentoml_impl.worker.service"
_BACKLOG = 2048  # BentoML's default
_METRICS_DIR = "prometheus_multiproc_dir"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Longer than the router's upstream keep-alive, so the router never reuses a closing connection.
SERVER_KEEPALIVE_S = 65
_POLL_S = 0.1
SERVER_WITHHELD = frozenset({"CONVEYOR_MINIO_ACCESS_KEY", "CONVEYOR_MINIO_SECRET_KEY", "CONVEYOR_API_TOKENS"})
_START_ATTEMPTS = 2


class ServingError(Exception):
    """A server or router could not be started or switched to; what was serving keeps serving."""


@dataclass
class Server:
    """The BentoML worker processes serving one model version on one port.

    The deploy service keeps the listening socket the workers share: while a lost worker is
    started again on it, requests wait in its backlog instead of being refused.
    """

    version: int
    port: int
    name: str
    listener: socket.socket
    workers: tuple[Child, ...]
    home: Path
    env: Mapping[str, str]
    arguments: Mapping[str, str]

    @property
    def url(self) -> str:
        """Where the router reaches it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether every worker still runs."""
        return all(worker.alive for worker in self.workers)


@dataclass
class Endpoint:
    """A pipeline's stable endpoint: its router, and the server behind it."""

    pipeline: str
    port: int
    router: Child
    control: RouterControl
    server: Server | None = None

    @property
    def processes(self) -> tuple[Child, ...]:
        """The router and the server's workers."""
        return (self.router, *(self.server.workers if self.server else ()))


class Rollout:
    """Starts, switches and stops the processes behind every pipeline's endpoint."""

    def __init__(self, settings: DeploySettings, processes: ProcessBook) -> None:
        self._settings = settings
        self._processes = processes
        self.endpoints: dict[str, Endpoint] = {}

    def endpoint_url(self, port: int) -> str:
        """The public URL of the endpoint on ``port``."""
        return f"http://{self._settings.advertised_host}:{port}"

    def serving(self, pipeline: str) -> int | None:
        """The version a live server answers for ``pipeline`` behind a live router, if any."""
        endpoint = self.endpoints.get(pipeline)
        if endpoint is None or endpoint.server is None:
            return None
        if not (endpoint.router.alive and endpoint.server.alive):
            return None
        return endpoint.server.version

    async def any_exit(self, *, timeout_s: float) -> None:
        """Return once a running router or server process exits, or after ``timeout_s``."""
        running = [
            child for endpoint in self.endpoints.values() for child in endpoint.processes if child.alive
        ]
        if not running:
            await asyncio.sleep(timeout_s)
            return
        exits = [asyncio.ensure_future(child.process.wait()) for child in running]
        try:
            await asyncio.wait(exits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for exit_ in exits:
                exit_.cancel()

    async def roll_out(
        self, *, pipeline: str, port: int, version: int, tag: str, correlation_id: UUID
    ) -> None:
        """Serve ``tag`` behind the pipeline's endpoint, replacing the old server with no failed request."""
        # The router and the server start side by side: neither needs the other before the switch.
        # The server, which takes longer, is spawned first.
        server, endpoint = await asyncio.gather(
            self._start_server(pipeline=pipeline, version=version, tag=tag, correlation_id=correlation_id),
            self._endpoint(pipeline, port),
            return_exceptions=True,
        )
        if isinstance(server, BaseException):
            if isinstance(endpoint, Endpoint) and endpoint.server is None:  # nothing served yet: no endpoint
                await self.stop(pipeline)
            raise server
        if isinstance(endpoint, BaseException):
            await self._stop_server(server)
            raise endpoint
        try:
            result = await endpoint.control.switch(
                server.url, drain_timeout_s=self._settings.serving_drain_timeout_s
            )
        except Exception as error:
            await self._stop_server(server)
            raise ServingError(
                f"the endpoint of {pipeline} could not switch to version {version}: {error!r}"
            ) from error
        previous, endpoint.server = endpoint.server, server
        log.info("%s now serves version %d (%s)", pipeline, version, result)
        if previous is not None:
            await self._stop_server(previous)

    async def stop(self, pipeline: str) -> None:
        """Stop a pipeline's server and router."""
        endpoint = self.endpoints.pop(pipeline, None)
        if endpoint is None:
            return
        timeout = self._settings.serving_stop_timeout_s
        await self._processes.stop(endpoint.router, timeout_s=timeout)
        if endpoint.server is not None:
            await self._stop_server(endpoint.server)
        await endpoint.control.close()

    async def stop_all(self) -> None:
        """Stop every server and router this deploy service started."""
        for pipeline in list(self.endpoints):
            await self.stop(pipeline)
        await self._processes.stop_all(timeout_s=self._settings.serving_stop_timeout_s)

    async def _endpoint(self, pipeline: str, port: int) -> Endpoint:
        endpoint = self.endpoints.get(pipeline)
        if endpoint is not None and endpoint.router.alive:
            return endpoint
        if endpoint is not None:  # the router died: start a new one (the old server is stopped)
            await self.stop(pipeline)
        endpoint = await self._start_router(pipeline, port)
        self.endpoints[pipeline] = endpoint
        return endpoint

    async def _start_router(self, pipeline: str, port: int) -> Endpoint:
        control_socket = _socket_dir(self._settings.run_dir) / f"{pipeline}.sock"
        argv = [
            sys.executable, "-m", "services.deploy.router",
            "--host", self._settings.serving_host,
            "--port", str(port),
            "--admin-socket", str(control_socket),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in SERVER_WITHHELD}
        child = await self._processes.spawn(f"router-{pipeline}", argv, env=env, cwd=PROJECT_ROOT)
        control = RouterControl(control_socket)
        router_ready = partial(control.wait_ready, timeout_s=_POLL_S)
        if not await _until(router_ready, processes=(child,), timeout_s=30.0):
            await self._processes.stop(child, timeout_s=self._settings.serving_stop_timeout_s)
            await control.close()
            raise ServingError(f"the router of {pipeline} did not start:\n{log_tail(child.log_path)}")
        return Endpoint(pipeline=pipeline, port=port, router=child, control=control)

    async def _start_server(self, *, pipeline: str, version: int, tag: str, correlation_id: UUID) -> Server:
        arguments = {"model_tag": tag, "correlation_id": str(correlation_id)}
        timeout = self._settings.serving_ready_timeout_s
        for attempt in range(1, _START_ATTEMPTS + 1):
            server = await self._spawn_server(pipeline=pipeline, version=version, arguments=arguments)
            if await _until(partial(_ready, server.url), processes=server.workers, timeout_s=timeout):
                return server
            await self._stop_server(server)
            log.warning("%s did not become ready (attempt %d):\n%s", server.url, attempt, _tails(server))
        raise ServingError(
            f"the server of {pipeline} version {version} did not become ready:\n{_tails(server)}"
        )

    async def _spawn_server(self, *, pipeline: str, version: int, arguments: Mapping[str, str]) -> Server:
        """Bind a free local port and start the workers on it."""
        listener = _listen("127.0.0.1")
        port: int = listener.getsockname()[1]
        name = f"server-{pipeline}-v{version}-{port}"
        home = server_home(self._settings, name)
        count = self._settings.serving_workers
        server = Server(
            version=version,
            port=port,
            name=name,
            listener=listener,
            workers=(),
            home=home,
            env=server_environment(self._settings, home=home),
            arguments={**arguments, "workers": str(count)},
        )
        try:
            for worker_id in range(1, count + 1):
                server.workers = (*server.workers, await self._spawn_worker(server, worker_id))
        except BaseException:
            await self._stop_server(server)
            raise
        return server

    async def _spawn_worker(self, server: Server, worker_id: int) -> Child:
        fd = server.listener.fileno()
        argv = worker_command(fd=fd, worker_id=worker_id, arguments=server.arguments)
        return await self._processes.spawn(
            f"{server.name}-w{worker_id}", argv, env=server.env, cwd=PROJECT_ROOT, pass_fds=(fd,)
        )

    async def revive(self, pipeline: str) -> bool:
        """Start a serving server's lost workers again on its socket; whether it serves again.

        Requests keep arriving at the router meanwhile and wait in the socket's backlog, as under
        ``bentoml serve``'s arbiter; a server that does not come back is left for a full restart.
        """
        endpoint = self.endpoints.get(pipeline)
        server = endpoint.server if endpoint is not None else None
        if endpoint is None or server is None or not endpoint.router.alive or server.alive:
            return False
        timeout = self._settings.serving_stop_timeout_s
        workers = list(server.workers)
        for index, worker in enumerate(workers):
            if not worker.alive:
                await self._processes.stop(worker, timeout_s=timeout)  # and whatever it left behind
                workers[index] = await self._spawn_worker(server, worker_id=index + 1)
                log.warning("%s: worker %d exited; started it again", server.name, index + 1)
        server.workers = tuple(workers)
        ready = partial(_ready, server.url)
        return await _until(ready, processes=server.workers, timeout_s=self._settings.serving_ready_timeout_s)

    async def _stop_server(self, server: Server) -> None:
        server.listener.close()  # nothing new waits for workers that are stopping
        timeout = self._settings.serving_stop_timeout_s
        await asyncio.gather(*(self._processes.stop(worker, timeout_s=timeout) for worker in server.workers))
        await asyncio.to_thread(shutil.rmtree, server.home, ignore_errors=True)


def worker_command(*, fd: int, worker_id: int, arguments: Mapping[str, str]) -> list[str]:
    """One BentoML HTTP worker of the prediction service, serving on the inherited listening socket ``fd``."""
    return [
        sys.executable, "-m", BENTOML_WORKER, SERVICE,
        "--fd", str(fd),
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


def _listen(host: str) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((host, 0))
        listener.listen(_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


async def _ready(url: str) -> bool:
    # Until the worker accepts, the request waits in the listening socket's backlog: it is answered
    # as soon as the server serves, and times out (to be asked again) only while it starts.
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"{url}/readyz")).status_code == httpx.codes.OK
    except httpx.TransportError:
        return False


async def _until(
    check: Callable[[], Awaitable[bool]], *, processes: Sequence[Child], timeout_s: float
) -> bool:
    """Poll ``check`` until it holds, one of ``processes`` exits, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and all(process.alive for process in processes):
        if await check():
            return True
        await asyncio.sleep(_POLL_S)
    return False


def _tails(server: Server) -> str:
    return "\n".join(log_tail(worker.log_path) for worker in server.workers)


def _socket_dir(run_dir: Path) -> Path:
    # Unix socket paths are limited to about 100 bytes, so they live in a short private
    # directory of their own (mode 0700: only this user reaches the control sockets).
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"conveyor-{os.getuid()}-{digest}"
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory
