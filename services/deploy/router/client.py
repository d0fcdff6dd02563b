"""The deploy service's side of a router: its control socket."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

_POLL_S = 0.05


class RouterControl:
    """Talks to one router over its Unix control socket."""

    def __init__(self, socket: Path, *, timeout_s: float = 120.0) -> None:
        self.socket = socket
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket)), base_url="http://router", timeout=timeout_s
        )

    async def status(self) -> dict[str, Any]:
        """The active upstream and its load."""
        response = await self._client.get("/upstream")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def switch(self, url: str, *, drain_timeout_s: float) -> dict[str, Any]:
        """Send new requests to ``url``; returns once the previous upstream has drained."""
        response = await self._client.put("/upstream", json={"url": url, "drain_timeout_s": drain_timeout_s})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def wait_ready(self, *, timeout_s: float) -> bool:
        """Poll until the control socket answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                await self.status()
                return True
            except (httpx.TransportError, httpx.HTTPStatusError):
                await asyncio.sleep(_POLL_S)
        return False

    async def close(self) -> None:
        """Close the control connection."""
        await self._client.aclose()
