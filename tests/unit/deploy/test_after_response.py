"""Work left for after the answer runs once the last body chunk has been handed on, not before."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any

import pytest

from services.deploy.serving.after_response import AfterResponse, after_response


def test_work_runs_after_the_last_chunk_and_only_for_its_own_request() -> None:
    sent: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/left":
            after_response(SimpleNamespace(scope=scope), lambda: sent.append("work"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message.get("body", b"start").decode())

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    middleware = AfterResponse(app)  # type: ignore[arg-type]
    asyncio.run(middleware({"type": "http", "path": "/left"}, receive, send))
    assert sent == ["start", "a", "b", "work"]
    sent.clear()
    asyncio.run(middleware({"type": "http", "path": "/other"}, receive, send))
    assert sent == ["start", "a", "b"]


def test_a_request_that_fails_before_its_answer_runs_nothing() -> None:
    ran: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        after_response(SimpleNamespace(scope=scope), lambda: ran.append("work"))
        raise RuntimeError("the model failed")

    async def send(message: MutableMapping[str, Any]) -> None:
        raise AssertionError("nothing is sent")

    with pytest.raises(RuntimeError):
        asyncio.run(AfterResponse(app)({"type": "http"}, None, send))  # type: ignore[arg-type]
    assert ran == []
