"""The control line to a worker: one JSON command per line on a Unix socket, refusals with reasons."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from services.deploy.serving import control


async def _handle(command: Mapping[str, Any]) -> Mapping[str, Any]:
    if command["op"] == "echo":
        return {"said": command["text"]}
    raise LookupError(f"no such command {command['op']!r}")


async def test_commands_are_answered_and_refusals_carry_the_reason() -> None:
    with tempfile.TemporaryDirectory() as directory:  # a short path: Unix sockets hold ~100 bytes
        path = control.socket_path(f"{directory}/p", 2)
        server = await control.serve(path, _handle)
        try:
            assert (await control.ask(path, {"op": "echo", "text": "hi"}, timeout_s=5))["said"] == "hi"
            with pytest.raises(control.ControlError, match="LookupError: no such command 'nope'"):
                await control.ask(path, {"op": "nope"}, timeout_s=5)
        finally:
            server.close()
            await server.wait_closed()


async def test_a_worker_that_is_not_there_is_a_control_error() -> None:
    with pytest.raises(control.ControlError, match="not reachable"):
        await control.ask(Path("/nonexistent/worker-w1.sock"), {"op": "status"}, timeout_s=1)
