"""The per-request time limit of a BentoML server, without keeping every finished request alive.

BentoML 1.4's ``TimeoutMiddleware`` arms a ``loop.call_later(timeout, ...)`` per request and never
cancels it. Each timer holds the request's future and its context (with the OpenTelemetry span)
until the timeout passes: at 40 requests/s and the 60 s limit, some 2,400 finished requests stay
in memory, age into the oldest garbage-collector generation and make its collections take
100-400 ms on the worker's event loop, the periodic stalls of the p99. After a burst, the
leftover timers keep latency up until they expire. This middleware keeps the same contract (a 504
with a JSON reason once the limit passes) and cancels its timer the moment the request is done.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTimeout:
    """Answer 504 when a request has not started its response within ``timeout`` seconds."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        # An empty context: the timer must not carry the request's (its span, its locals).
        timer = loop.call_later(self.timeout, _expire, started, context=contextvars.Context())

        async def send_and_mark(message: Message) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        handling = asyncio.ensure_future(self.app(scope, receive, send_and_mark))
        handling.add_done_callback(lambda done: _settle(started, done))
        try:
            await started
        except TimeoutError:
            if handling.cancel():
                reason = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(reason, status_code=504)(scope, receive, send)
            return
        finally:
            timer.cancel()
        await handling


def install() -> None:
    """Make BentoML build its servers' timeout middleware from ``RequestTimeout``.

    BentoML looks the class up in its ``traffic`` module each time it assembles a server's
    middleware, so replacing it there (before the worker builds its app) is enough.
    """
    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]


def _expire(started: asyncio.Future[Any]) -> None:
    if not started.done():
        started.set_exception(TimeoutError())


def _settle(started: asyncio.Future[Any], handling: asyncio.Future[Any]) -> None:
    # A handler that ends (or fails) without sending anything must not leave the wait hanging.
    if not started.done():
        started.set_result(None)
