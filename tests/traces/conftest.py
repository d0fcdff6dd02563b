"""The end-to-end stack of tests/e2e, here with every process exporting its spans to Jaeger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import Stack, pipeline_name, stack, stack_env, stack_settings  # noqa: F401
from tests.integration.processes import ServiceProcess, free_port


@pytest.fixture(scope="module")
async def console(stack: Stack, stack_env: dict[str, str]) -> AsyncIterator[str]:  # noqa: F811
    """The console over the stack, reading traces from Jaeger only (no trace file to fall back on)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in stack_env.items() if name != "CONVEYOR_TRACE_FILE"}
    process = ServiceProcess(
        "console",
        env={**env, "CONVEYOR_JAEGER": "1", "CONVEYOR_CONSOLE_PORT": str(port)},
        log_dir=stack.settings.state_dir / "logs",
        ready_url=f"{url}/health/ready",
    )
    await asyncio.to_thread(process.start, timeout=120)
    yield url
    await asyncio.to_thread(process.stop)
