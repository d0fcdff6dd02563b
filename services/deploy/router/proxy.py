"""The stable endpoint of a pipeline: a small HTTP reverse proxy in front of its BentoML server.

Clients keep their connections to this proxy; the server behind it changes. A switch points new
requests at the new server at once, lets requests already on the old one finish (drain), and
only then reports back, so the deploy service can stop the old server with nothing in flight.
The proxy is told what to do on a Unix socket that only this machine's deploy service can reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger("conveyor.router")

# Not forwarded: they describe one hop's connection, not the request (RFC 9110 §7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
MAX_BODY_BYTES = 64 * 1024 * 1024
# Below the BentoML servers' keep-alive (started with 65 s), so the proxy never reuses a
# connection the server is closing.
UPSTREAM_KEEPALIVE_S = 30.0
_DRAIN_POLL_S = 0.01
_RETRIED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


@dataclass(eq=False)
class Upstream:
    """One BentoML server, with its own connection pool and a count of requests in flight."""

    url: str
    session: aiohttp.ClientSession
    in_flight: int = 0
    served: int = field(default=0)

    @classmethod
    def connect(cls, url: str, *, timeout_s: float) -> Upstream:
        """A pool of kept-alive connections to ``url``."""
        connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=UPSTREAM_KEEPALIVE_S)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        return cls(url=url.rstrip("/"), session=session)


class Router:
    """Forwards every request to the active upstream; switches upstreams without failing requests."""

    def __init__(self, *, timeout_s: float = 60.0) -> None:
        self._timeout_s = timeout_s
        self.active: Upstream | None = None
        self._switching = asyncio.Lock()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Send ``request`` to the active upstream and relay its answer."""
        body = await request.read()
        headers = _forwarded_headers(request)
        for attempt in (1, 2):
            upstream = self.active
            if upstream is None:
                return web.json_response({"error": "no model version is serving yet"}, status=503)
            upstream.in_flight += 1
            try:
                return await self._relay(upstream, request, headers=headers, body=body)
            except _RETRIED as error:
                # The connection died before an answer (a server closing a kept-alive connection):
                # once more, on a fresh connection, to whichever upstream is active now.
                if attempt == 2:
                    return _bad_gateway(error)
            except (aiohttp.ClientError, TimeoutError) as error:
                return _bad_gateway(error)
            finally:
                upstream.in_flight -= 1
                upstream.served += 1
        raise AssertionError("unreachable")

    async def switch(self, url: str, *, drain_timeout_s: float) -> dict[str, object]:
        """Make ``url`` the active upstream, then wait for the previous one to drain and close it."""
        async with self._switching:
            previous = self.active
            if previous is not None and previous.url == url.rstrip("/"):
                return {"active": previous.url, "previous": None, "drained": True, "left_in_flight": 0}
            self.active = Upstream.connect(url, timeout_s=self._timeout_s)
            log.info("switched to %s (previous: %s)", url, previous.url if previous else None)
            if previous is None:
                return {"active": self.active.url, "previous": None, "drained": True, "left_in_flight": 0}
            drained = await _drain(previous, timeout_s=drain_timeout_s)
            left_in_flight = previous.in_flight  # past the timeout, these are cut off
            await previous.session.close()
            return {
                "active": self.active.url,
                "previous": previous.url,
                "drained": drained,
                "left_in_flight": left_in_flight,
            }

    def status(self) -> dict[str, object]:
        """The active upstream and its load."""
        if self.active is None:
            return {"active": None, "in_flight": 0, "served": 0}
        return {"active": self.active.url, "in_flight": self.active.in_flight, "served": self.active.served}

    async def close(self) -> None:
        """Close the upstream connections."""
        if self.active is not None:
            await self.active.session.close()

    async def _relay(
        self, upstream: Upstream, request: web.Request, *, headers: CIMultiDict[str], body: bytes
    ) -> web.Response:
        async with upstream.session.request(
            request.method,
            upstream.url + request.rel_url.raw_path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
            # Forward the client's Content-Type (or its absence): aiohttp would otherwise add
            # application/octet-stream, which the endpoint refuses as not JSON.
            skip_auto_headers=("Content-Type",),
        ) as answer:
            payload = await answer.read()
            response_headers = CIMultiDict(
                (name, value) for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP
            )
            return web.Response(status=answer.status, body=payload, headers=response_headers)


async def _drain(upstream: Upstream, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while upstream.in_flight > 0:
        if time.monotonic() >= deadline:
            log.warning(
                "%s still had %d requests in flight after %.1fs", upstream.url, upstream.in_flight, timeout_s
            )
            return False
        await asyncio.sleep(_DRAIN_POLL_S)
    return True


def _forwarded_headers(request: web.Request) -> CIMultiDict[str]:
    headers = CIMultiDict(
        (name, value) for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP
    )
    if request.remote:
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {request.remote}" if prior else request.remote
    return headers


def _bad_gateway(error: BaseException) -> web.Response:
    log.warning("upstream failed: %r", error)
    return web.json_response(
        {"error": f"the model server did not answer: {type(error).__name__}"}, status=502
    )


def public_app(router: Router) -> web.Application:
    """The application clients reach: everything goes to the active upstream."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_route("*", "/{tail:.*}", router.forward)
    return app


def admin_app(router: Router) -> web.Application:
    """The control application on the Unix socket: status and switch."""

    async def status(_: web.Request) -> web.Response:
        return web.json_response(router.status())

    async def switch(request: web.Request) -> web.Response:
        order = await request.json()
        result = await router.switch(
            str(order["url"]), drain_timeout_s=float(order.get("drain_timeout_s", 30))
        )
        return web.json_response(result)

    app = web.Application()
    app.router.add_get("/upstream", status)
    app.router.add_put("/upstream", switch)
    return app
