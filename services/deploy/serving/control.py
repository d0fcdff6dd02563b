"""The deploy service's line to each serving worker: one Unix socket per worker, one JSON object per line.

Clients reach the workers directly on the pipeline's port, which the workers share; nothing of
the deploy service stands in the request path. What the deploy service has to tell a worker
(load this version and warm it up, switch to it, drop it) and what workers ask each other (join
feedback to a prediction another worker served) travels here instead. The socket lives in a
private directory (mode 0700) that only this user reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("conveyor.serving.control")

Handler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
_LIMIT = 16 * 1024 * 1024
# Where the deploy service keeps every pipeline's version for the shared workers, in their home.
ASSIGNMENTS_FILE = "assignments.json"


class ControlError(Exception):
    """A worker refused a command (its reason), or could not be reached."""


def socket_path(prefix: str, worker_id: int) -> Path:
    """Where worker ``worker_id`` of the endpoint named by ``prefix`` listens for commands."""
    return Path(f"{prefix}-w{worker_id}.sock")


async def serve(path: Path, handle: Handler) -> asyncio.AbstractServer:
    """Answer commands on ``path`` with ``handle`` (a dict in, a dict out) until the server closes."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = {"ok": True, **(await handle(json.loads(line)))}
                except Exception as error:  # the reason goes back to whoever asked
                    answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(connection, path=str(path), limit=_LIMIT)


async def ask(path: Path, command: Mapping[str, Any], *, timeout_s: float) -> dict[str, Any]:
    """Send one command to the worker on ``path`` and return its answer; a refusal raises ControlError."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=_LIMIT)
            try:
                writer.write(json.dumps(dict(command)).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as error:
        raise ControlError(f"worker at {path} not reachable: {error!r}") from error
    if not line:
        raise ControlError(f"worker at {path} closed the connection")
    answer: dict[str, Any] = json.loads(line)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "refused")))
    return answer
