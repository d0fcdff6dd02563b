"""Work a request leaves for after its answer has gone out: a shadow candidate's scoring.

Scheduled as a task from inside the handler, the work could run before the answer is written,
whenever a layer between the handler and the socket yields to the event loop, and the caller
would wait for a model it never hears from. This middleware starts the work only once the last
chunk of the response body has been handed on towards the socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.deploy.serving.guard import ASGIApp, Message, Receive, Scope, Send

_KEY = "conveyor_after_response"


def after_response(request: Any, work: Callable[[], None]) -> None:
    """Run ``work`` once ``request``'s answer has been sent (never, if it fails before that)."""
    request.scope.setdefault("state", {}).setdefault(_KEY, []).append(work)


class AfterResponse:
    """ASGI middleware running what a request left in its scope after its last response chunk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def relay(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                for work in scope.get("state", {}).pop(_KEY, ()):
                    work()

        await self.app(scope, receive, relay)
