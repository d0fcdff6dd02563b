"""Refuse request bodies that are not JSON before BentoML decodes them.

BentoML decodes ``application/vnd.bentoml+pickle`` bodies on internal servers (CVE-2025-27520,
CVE-2025-32375) and falls back to JSON for media types it does not know; an endpoint of ours
takes JSON only, so anything else (any pickle above all) is answered 415 without being read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACCEPTED_MEDIA_TYPE = "application/json"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def media_type_of(scope: Scope) -> str | None:
    """The request's media type without parameters, lower-cased; None when no Content-Type is sent."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return str(value.decode("latin-1").split(";", 1)[0].strip().lower())
    return None


def refused(scope: Scope) -> str | None:
    """Why a request is refused, or None when its body may be read."""
    if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
        return None
    media_type = media_type_of(scope)
    if media_type in (None, ACCEPTED_MEDIA_TYPE):
        return None
    return f"unsupported media type {media_type!r}: this endpoint accepts {ACCEPTED_MEDIA_TYPE} only"


class JsonOnly:
    """ASGI middleware answering 415 to any body that is not JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = refused(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 415, "headers": headers})
        await send({"type": "http.response.body", "body": body})
