"""Only JSON bodies reach BentoML: any pickle (or other) media type is refused with 415."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.deploy.serving.guard import JsonOnly, refused


def _scope(method: str, content_type: str | None) -> dict[str, object]:
    headers = [(b"content-type", content_type.encode())] if content_type else []
    return {"type": "http", "method": method, "headers": headers}


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.bentoml+pickle",
        "application/python-pickle",
        "application/x-pickle; charset=binary",
        "APPLICATION/VND.BENTOML+PICKLE",
        "multipart/form-data; boundary=x",
        "text/plain",
    ],
)
def test_bodies_that_are_not_json_are_refused(media_type: str) -> None:
    assert refused(_scope("POST", media_type)) is not None


@pytest.mark.parametrize(
    ("method", "media_type"),
    [
        ("POST", "application/json"),
        ("POST", "application/json; charset=utf-8"),
        ("POST", None),
        ("GET", "x/y"),
    ],
)
def test_json_bodies_and_reads_pass(method: str, media_type: str | None) -> None:
    assert refused(_scope(method, media_type)) is None


async def test_the_middleware_answers_415_without_calling_the_app() -> None:
    calls: list[bytes] = []

    async def echo(request: Request) -> JSONResponse:
        calls.append(await request.body())
        return JSONResponse({"ok": True})

    app = JsonOnly(Starlette(routes=[Route("/v1/predict", echo, methods=["POST"])]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        pickled = await client.post(
            "/v1/predict", content=b"\x80\x04.", headers={"content-type": "application/vnd.bentoml+pickle"}
        )
        ok = await client.post("/v1/predict", json={"age": 1})
    assert pickled.status_code == 415 and "pickle" in pickled.json()["error"]
    assert ok.status_code == 200 and calls == [b'{"age":1}']
