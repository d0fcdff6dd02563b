"""Rolling a pipeline's endpoint to another model version: start, ready, switch, drain, stop.

Each pipeline has one stable endpoint, a router process on a port of its own. A new version gets
a new ``bentoml serve`` process on a free local port; once its /readyz answers, the router sends
new requests to it and waits for the requests still on the old server to finish; only then is the
old server stopped. A server that never becomes ready is stopped and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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
    """One ``bentoml serve`` process serving one model version."""

    version: int
    port: int
    child: Child
    home: Path

    @property
    def url(self) -> str:
        """Where the router reaches it."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Endpoint:
    """A pipeline's stable endpoint: its router, and the server behind it."""

    pipeline: str
    port: int
    router: Child
    control: RouterControl
    server: Server | None = None


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
        if not (endpoint.router.alive and endpoint.server.child.alive):
            return None
        return endpoint.server.version

    async def roll_out(
        self, *, pipeline: str, port: int, version: int, tag: str, correlation_id: UUID
    ) -> None:
        """Serve ``tag`` behind the pipeline's endpoint, replacing the old server with no failed request."""
        endpoint = await self._endpoint(pipeline, port)
        try:
            server = await self._start_server(
                pipeline=pipeline, version=version, tag=tag, correlation_id=correlation_id
            )
        except ServingError:
            if endpoint.server is None:  # nothing served yet: no endpoint either
                await self.stop(pipeline)
            raise
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
        if not await _until(partial(control.wait_ready, timeout_s=_POLL_S), child=child, timeout_s=30.0):
            await self._processes.stop(child, timeout_s=self._settings.serving_stop_timeout_s)
            await control.close()
            raise ServingError(f"the router of {pipeline} did not start:\n{log_tail(child.log_path)}")
        return Endpoint(pipeline=pipeline, port=port, router=child, control=control)

    async def _start_server(self, *, pipeline: str, version: int, tag: str, correlation_id: UUID) -> Server:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_local_port()
            name = f"server-{pipeline}-v{version}-{port}"
            argv = [
                sys.executable, "-m", "bentoml", "serve", SERVICE,
                "--host", "127.0.0.1",
                "--port", str(port),
                "--working-dir", str(PROJECT_ROOT),
                "--timeout-keep-alive", str(SERVER_KEEPALIVE_S),
                "--arg", f"model_tag={tag}",
                "--arg", f"correlation_id={correlation_id}",
                "--arg", f"workers={self._settings.serving_workers}",
            ]  # fmt: skip
            home = server_home(self._settings, name)
            env = server_environment(self._settings, home=home)
            child = await self._processes.spawn(name, argv, env=env, cwd=PROJECT_ROOT)
            server = Server(version=version, port=port, child=child, home=home)
            ready = partial(_ready, server.url)
            if await _until(ready, child=child, timeout_s=self._settings.serving_ready_timeout_s):
                return server
            await self._stop_server(server)
            log.warning("%s did not become ready (attempt %d):\n%s", name, attempt, log_tail(child.log_path))
        raise ServingError(
            f"the server of {pipeline} version {version} did not become ready:\n{log_tail(child.log_path)}"
        )

    async def _stop_server(self, server: Server) -> None:
        await self._processes.stop(server.child, timeout_s=self._settings.serving_stop_timeout_s)
        await asyncio.to_thread(shutil.rmtree, server.home, ignore_errors=True)


def server_home(settings: DeploySettings, name: str) -> Path:
    """A BentoML home of the server's own that shares the model store.

    BentoML wipes ``<home>/prometheus_multiproc_dir`` when a server starts; with one home for
    all servers, starting the new version would wipe the metrics of the one still draining.
    """
    home = settings.run_dir / "homes" / name
    home.mkdir(parents=True, exist_ok=True)
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
    env["BENTOML_DO_NOT_TRACK"] = "True"
    return env


def free_local_port() -> int:
    """A port nothing listens on right now (the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


async def _ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(f"{url}/readyz")).status_code == httpx.codes.OK
    except httpx.TransportError:
        return False


async def _until(check: Callable[[], Awaitable[bool]], *, child: Child, timeout_s: float) -> bool:
    """Poll ``check`` until it holds, the child exits, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.alive:
        if await check():
            return True
        await asyncio.sleep(_POLL_S)
    return False


def _socket_dir(run_dir: Path) -> Path:
    # Unix socket paths are limited to about 100 bytes, so they live in a short private
    # directory of their own (mode 0700: only this user reaches the control sockets).
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"conveyor-{os.getuid()}-{digest}"
    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory
