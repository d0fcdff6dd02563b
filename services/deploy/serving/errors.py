"""Error bodies as the endpoint's OpenAPI document describes them: ``{"error": <text>, "detail": <text>}``.

BentoML 1.4 answers a 4xx ``BentoMLException`` (``BadInput``, ``NotFound``) with the object wrapped
in a one-element list (a stray tuple in ``_bentoml_impl.server.app``), and a request that fails
validation with ``detail`` as a list of errors, while its own document promises an object with a
text ``detail``. This middleware gives 4xx JSON answers that shape and leaves every other response
alone.
"""

from __future__ import annotations

import json

from services.deploy.serving.guard import ASGIApp, Message, Receive, Scope, Send


def documented(body: bytes) -> bytes:
    """A JSON error ``body`` as an object with a text ``detail``; anything else is returned unchanged."""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if not isinstance(value, dict):
        return body
    if "detail" in value and not isinstance(value["detail"], str):
        value = {**value, "detail": json.dumps(value["detail"])}
    return json.dumps(value).encode()


class ErrorObjects:
    """ASGI middleware that gives 4xx JSON error bodies their documented shape."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def relay(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                start = message  # held until the (small) error body is complete
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = documented(b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, relay)
