"""Serving a pipeline's model versions on its stable port: warm workers that switch versions in place.

Each pipeline's endpoint is BentoML's HTTP workers of the prediction service, started here on the
pipeline's own port, a socket this process binds and keeps: clients reach the workers directly,
with no proxy in between, and while a lost worker is started again on the socket, requests wait
in its backlog instead of being refused. ``bentoml serve``'s circus arbiter is left out: it is one
more Python process that imports BentoML and the service module only to bind the socket and
start the workers.

A new version does not get new processes. Every worker is asked over its control socket to
prepare it (load it from the store, check its digest and types, answer its warm-up rows as
recorded) while it keeps serving the old one; only once every worker has, they are asked to
activate it, and each switches atomically between two requests (``services.deploy.serving.versions``).
A version that any worker fails to prepare is dropped everywhere and the old one keeps serving.
A rollback is the same switch. A worker started again after a crash loads the endpoint's
current version.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from services.deploy.processes import Child, ProcessBook, log_tail
from services.deploy.serving import control
from services.deploy.serving.tracing import current_carrier
from services.deploy.settings import DeploySettings
from services.deploy.workers import (
    POOL_SERVICE,
    PROJECT_ROOT,
    SERVICE,
    ServingError,
    Spares,
    listen,
    server_environment,
    server_home,
    socket_dir,
    worker_arguments,
    worker_command,
)

log = logging.getLogger("conveyor.deploy.rollout")

_POLL_S = 0.05
_STATUS_TIMEOUT_S = 1.0


@dataclass
class Endpoint:
    """A pipeline's stable endpoint: the socket on its port, and the workers serving on it."""

    pipeline: str
    port: int
    listener: socket.socket
    home: Path
    env: Mapping[str, str]
    control: str
    version: int
    arguments: dict[str, str]
    workers: list[Child] = field(default_factory=list)
    # The release's split command while a candidate shares the endpoint: a worker started again gets it too.
    split: dict[str, Any] | None = None
    # The BentoML service its workers run: one pipeline's (the default), or the shared workers'.
    service: str = SERVICE
    # Shared workers: each pipeline's assignment (a worker started again reads them from its home).
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The name its processes are recorded under."""
        return f"endpoint-{self.pipeline}"

    @property
    def alive(self) -> bool:
        """Whether every worker still runs."""
        return bool(self.workers) and all(worker.alive for worker in self.workers)

    def control_socket(self, worker_id: int) -> Path:
        """Where worker ``worker_id`` (from 1) takes commands."""
        return control.socket_path(self.control, worker_id)


class Rollout:
    """Starts the workers behind every pipeline's endpoint and switches the version they serve."""

    def __init__(self, settings: DeploySettings, processes: ProcessBook) -> None:
        self._settings = settings
        self._processes = processes
        self.endpoints: dict[str, Endpoint] = {}
        self.spares = Spares(settings, processes)

    def endpoint_url(self, port: int) -> str:
        """The public URL of the endpoint on ``port``."""
        return f"http://{self._settings.advertised_host}:{port}"

    def serving(self, pipeline: str) -> int | None:
        """The version every live worker of ``pipeline``'s endpoint serves, if any."""
        endpoint = self.endpoints.get(pipeline)
        return endpoint.version if endpoint is not None and endpoint.alive else None

    async def any_exit(self, *, timeout_s: float) -> None:
        """Return once a running worker exits, or after ``timeout_s``."""
        running = [w for endpoint in self.endpoints.values() for w in endpoint.workers if w.alive]
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
        """Serve ``tag`` on the pipeline's endpoint: in the running workers when there are any."""
        # The approval's trace goes with the version: its first prediction joins the arrival's trace.
        trace = current_carrier()
        arguments = {"model_tag": tag, "correlation_id": str(correlation_id)}
        endpoint = self.endpoints.get(pipeline)
        if endpoint is not None and not endpoint.alive and not await self.revive(pipeline):
            await self.stop(pipeline)
            endpoint = None
        if endpoint is None:
            traceparent = {"traceparent": trace["traceparent"]} if "traceparent" in trace else {}
            await self._start(
                pipeline=pipeline, port=port, version=version, arguments=arguments | traceparent
            )
            return
        await self._switch(endpoint, version=version, arguments=arguments, trace=trace)

    async def stop(self, pipeline: str) -> None:
        """Stop a pipeline's workers and close its port."""
        endpoint = self.endpoints.pop(pipeline, None)
        if endpoint is None:
            return
        endpoint.listener.close()  # nothing new waits for workers that are stopping
        timeout = self._settings.serving_stop_timeout_s
        await asyncio.gather(
            *(self._processes.stop(worker, timeout_s=timeout) for worker in endpoint.workers)
        )
        await asyncio.to_thread(shutil.rmtree, endpoint.home, ignore_errors=True)

    async def stop_all(self) -> None:
        """Stop every endpoint this deploy service started, and the spare workers."""
        await self.spares.stop()
        for pipeline in list(self.endpoints):
            await self.stop(pipeline)
        await self._processes.stop_all(timeout_s=self._settings.serving_stop_timeout_s)

    async def revive(self, pipeline: str) -> bool:
        """Start an endpoint's lost workers again on its socket, with its current version; whether it serves.

        Requests keep arriving meanwhile and wait in the socket's backlog (or are answered by the
        workers still alive).
        """
        endpoint = self.endpoints.get(pipeline)
        if endpoint is None or endpoint.alive:
            return False
        timeout = self._settings.serving_stop_timeout_s
        revived = []
        for index, worker in enumerate(endpoint.workers):
            if not worker.alive:
                await self._processes.stop(worker, timeout_s=timeout)  # and whatever it left behind
                endpoint.workers[index] = await self._spawn_worker(endpoint, worker_id=index + 1)
                revived.append(index + 1)
                log.warning("%s: worker %d exited; started it again", endpoint.name, index + 1)
        if not await self._until_serving(endpoint, endpoint.version):
            return False
        if endpoint.split is not None:  # it takes its part in the release again
            for worker_id in revived:
                try:
                    await self.ask(endpoint, worker_id, endpoint.split)
                except control.ControlError as error:
                    log.error("%s: worker %d left out of the release: %s", endpoint.name, worker_id, error)
        return True

    async def start_shared(self, *, name: str, port: int) -> Endpoint:
        """Start the shared workers on ``port`` (no pipeline assigned yet), recorded as endpoint ``name``."""
        await self._start(pipeline=name, port=port, version=0, arguments={}, service=POOL_SERVICE)
        return self.endpoints[name]

    async def _start(
        self,
        *,
        pipeline: str,
        port: int,
        version: int,
        arguments: dict[str, str],
        service: str = SERVICE,
    ) -> None:
        listener = listen(self._settings.serving_host, port)
        home = server_home(self._settings, f"endpoint-{pipeline}")
        count = self._settings.serving_workers
        endpoint = Endpoint(
            pipeline=pipeline,
            port=port,
            listener=listener,
            home=home,
            env=server_environment(self._settings, home=home),
            control=str(socket_dir(self._settings.run_dir) / _short(pipeline)),
            version=version,
            arguments={**arguments, "workers": str(count)},
            service=service,
        )
        try:
            for worker_id in range(1, count + 1):
                endpoint.workers.append(await self._spawn_worker(endpoint, worker_id))
            if not await self._until_serving(endpoint, version):
                raise ServingError(
                    f"the endpoint of {pipeline} version {version} did not become ready:\n{_tails(endpoint)}"
                )
        except BaseException:
            self.endpoints[pipeline] = endpoint
            await self.stop(pipeline)
            raise
        self.endpoints[pipeline] = endpoint

    async def _switch(
        self, endpoint: Endpoint, *, version: int, arguments: dict[str, str], trace: dict[str, str]
    ) -> None:
        """Prepare ``version`` in every worker, then activate it in every worker; or change nothing."""
        started = time.monotonic()
        tag, correlation_id = arguments["model_tag"], arguments["correlation_id"]
        prepared = await self.ask_all(
            endpoint, {"op": "prepare", "tag": tag, "correlation_id": correlation_id, "trace": trace}
        )
        failed = [answer for answer in prepared if isinstance(answer, BaseException)]
        if failed:
            await self.ask_all(endpoint, {"op": "discard", "version": version})
            raise ServingError(f"{endpoint.pipeline} version {version} was not switched to: {failed[0]}")
        # From here a worker started again loads the new version.
        # A worker started again answers no arrival's first prediction: the trace stays behind.
        endpoint.version = version
        endpoint.arguments = {k: v for k, v in endpoint.arguments.items() if k != "traceparent"} | arguments
        activated = await self.ask_all(endpoint, {"op": "activate", "version": version})
        for worker_id, answer in zip(_ids(endpoint), activated, strict=True):
            if isinstance(answer, BaseException):  # it died meanwhile: healing starts it on the new version
                log.warning("%s: worker %d did not activate: %s", endpoint.name, worker_id, answer)
        took = time.monotonic() - started
        log.info("%s now serves version %d (switched in %.3f s)", endpoint.pipeline, version, took)

    async def ask_all(
        self, endpoint: Endpoint, command: Mapping[str, Any]
    ) -> list[dict[str, Any] | BaseException]:
        """Send ``command`` to every worker at once; each answer, or the error in its place."""
        asked = (self.ask(endpoint, i, command) for i in _ids(endpoint))
        return list(await asyncio.gather(*asked, return_exceptions=True))

    async def ask(self, endpoint: Endpoint, worker_id: int, command: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``command`` to one worker; its answer (a refusal raises ControlError)."""
        timeout = self._settings.serving_ready_timeout_s
        return await control.ask(endpoint.control_socket(worker_id), command, timeout_s=timeout)

    async def _until_serving(self, endpoint: Endpoint, version: int) -> bool:
        """Poll every worker until each says it serves ``version`` (or one exits, or time runs out)."""

        async def serving() -> bool:
            status = {"op": "status"}
            try:
                answers = await asyncio.gather(
                    *(
                        control.ask(endpoint.control_socket(i), status, timeout_s=_STATUS_TIMEOUT_S)
                        for i in _ids(endpoint)
                    )
                )
            except control.ControlError:
                return False
            return all(answer["version"] == version for answer in answers)

        timeout = self._settings.serving_ready_timeout_s
        return await _until(serving, processes=endpoint.workers, timeout_s=timeout)

    async def _spawn_worker(self, endpoint: Endpoint, worker_id: int) -> Child:
        """A spare worker handed the endpoint when one is ready; otherwise a new process."""
        fd = endpoint.listener.fileno()
        name = f"{endpoint.name}-w{worker_id}"
        arguments = {**endpoint.arguments, "control": endpoint.control}
        argv = worker_arguments(worker_id=worker_id, arguments=arguments, service=endpoint.service)
        adopted = await self.spares.adopt(name, argv=argv, env=endpoint.env, fd=fd)
        if adopted is not None:
            return adopted
        argv = worker_command(fd=fd, worker_id=worker_id, arguments=arguments, service=endpoint.service)
        return await self._processes.spawn(name, argv, env=endpoint.env, cwd=PROJECT_ROOT, pass_fds=(fd,))


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


def _ids(endpoint: Endpoint) -> range:
    return range(1, len(endpoint.workers) + 1)


def _tails(endpoint: Endpoint) -> str:
    return "\n".join(log_tail(worker.log_path) for worker in endpoint.workers)


def _short(pipeline: str) -> str:
    # Unix socket paths hold about 100 bytes: a pipeline's name may not fit, its digest does.
    return hashlib.sha256(pipeline.encode()).hexdigest()[:16]
