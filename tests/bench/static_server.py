"""The registry reads' baseline: the very same JSON answers, prepared in advance, from a bare Starlette app.

Run as ``uvicorn tests.bench.static_server:app`` with ``BENCH_RESPONSES`` naming a JSON file that
maps each path (with its query) to the body the registry answered for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWERS: dict[str, bytes] = {
    path: body.encode() for path, body in json.loads(Path(os.environ["BENCH_RESPONSES"]).read_text()).items()
}


async def answer(request: Request) -> Response:
    """The prepared answer for the path, or 404."""
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    body = ANSWERS.get(path)
    if body is None:
        return Response(status_code=404)
    return Response(body, media_type="application/json")


async def ready(_: Request) -> Response:
    """The answers are loaded."""
    return Response("ok")


app = Starlette(routes=[Route("/ready", ready), Route("/{path:path}", answer)])
