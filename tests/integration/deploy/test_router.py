"""The router in front of each endpoint, over real sockets: forwarding, switching, draining."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from services.deploy.router.client import RouterControl
from services.deploy.router.proxy import Router, admin_app, public_app
from tests.integration.processes import free_port


async def _serve(app: web.Application, *, port: int | None = None, path: Path | None = None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.UnixSite(runner, str(path)) if path else web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner


def _upstream(version: int) -> web.Application:
    async def predict(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(float(body.get("sleep", 0)))
        seen = {"forwarded_for": request.headers.get("X-Forwarded-For")}
        return web.json_response(
            {"version": version, "echo": body, "seen": seen}, headers={"X-Version": str(version)}
        )

    app = web.Application()
    app.router.add_post("/v1/predict", predict)
    return app


class Upstreams:
    def __init__(self) -> None:
        self.urls: dict[int, str] = {}
        self.runners: dict[int, web.AppRunner] = {}

    async def start(self, version: int) -> str:
        port = free_port()
        self.runners[version] = await _serve(_upstream(version), port=port)
        self.urls[version] = f"http://127.0.0.1:{port}"
        return self.urls[version]

    async def stop(self, version: int) -> None:
        await self.runners.pop(version).cleanup()


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    servers = Upstreams()
    yield servers
    for version in list(servers.runners):
        await servers.stop(version)


@pytest.fixture
async def routed() -> AsyncIterator[tuple[Router, str]]:
    router = Router(timeout_s=10)
    port = free_port()
    runner = await _serve(public_app(router), port=port)
    yield router, f"http://127.0.0.1:{port}"
    await runner.cleanup()
    await router.close()


async def test_nothing_serves_until_an_upstream_is_set(routed: tuple[Router, str]) -> None:
    _, url = routed
    async with httpx.AsyncClient(base_url=url) as client:
        answer = await client.post("/v1/predict", json={})
    assert answer.status_code == 503


async def test_requests_and_answers_pass_through(routed: tuple[Router, str], upstreams: Upstreams) -> None:
    router, url = routed
    await router.switch(await upstreams.start(1), drain_timeout_s=1)
    async with httpx.AsyncClient(base_url=url) as client:
        answer = await client.post("/v1/predict?x=1", json={"age": 3}, headers={"Connection": "keep-alive"})
    assert answer.status_code == 200 and answer.headers["X-Version"] == "1"
    body = answer.json()
    assert body["echo"] == {"age": 3} and body["seen"]["forwarded_for"] == "127.0.0.1"
    await upstreams.stop(1)
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.post("/v1/predict", json={})).status_code == 502


async def test_a_switch_returns_once_the_old_upstream_has_drained(
    routed: tuple[Router, str], upstreams: Upstreams
) -> None:
    router, url = routed
    await router.switch(await upstreams.start(1), drain_timeout_s=1)
    new = await upstreams.start(2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        slow = asyncio.create_task(client.post("/v1/predict", json={"sleep": 0.5}))
        await asyncio.sleep(0.1)
        switch = asyncio.create_task(router.switch(new, drain_timeout_s=5))
        await asyncio.sleep(0.05)
        assert (await client.post("/v1/predict", json={})).json()["version"] == 2  # new requests: the new one
        assert not switch.done()  # still draining the slow request
        assert (await slow).json()["version"] == 1
        result = await switch
    assert result["drained"] is True and result["previous"] == upstreams.urls[1]


async def test_a_drain_gives_up_after_its_timeout(routed: tuple[Router, str], upstreams: Upstreams) -> None:
    router, url = routed
    await router.switch(await upstreams.start(1), drain_timeout_s=1)
    new = await upstreams.start(2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        slow = asyncio.create_task(client.post("/v1/predict", json={"sleep": 1.0}))
        await asyncio.sleep(0.1)
        result = await router.switch(new, drain_timeout_s=0.2)
        assert (result["drained"], result["left_in_flight"]) == (False, 1)
        await asyncio.gather(slow, return_exceptions=True)


async def test_switching_back_and_forth_under_load_fails_no_request(
    routed: tuple[Router, str], upstreams: Upstreams
) -> None:
    router, url = routed
    await router.switch(await upstreams.start(1), drain_timeout_s=1)
    await upstreams.start(2)
    stop = asyncio.Event()
    statuses: Counter[int] = Counter()

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while not stop.is_set():
                statuses[(await client.post("/v1/predict", json={"sleep": 0.002})).status_code] += 1

    clients = [asyncio.create_task(client_loop()) for _ in range(8)]
    for version in (2, 1, 2, 1, 2):
        await asyncio.sleep(0.1)
        assert (await router.switch(upstreams.urls[version], drain_timeout_s=5))["drained"]
    stop.set()
    await asyncio.gather(*clients)
    assert set(statuses) == {200} and statuses[200] > 100


async def test_the_control_socket_switches_and_reports(upstreams: Upstreams, tmp_path: Path) -> None:
    router = Router()
    control_path = tmp_path / "ctl.sock"
    runner = await _serve(admin_app(router), path=control_path)
    control = RouterControl(control_path)
    try:
        assert await control.wait_ready(timeout_s=5)
        assert (await control.status())["active"] is None
        url = await upstreams.start(1)
        assert (await control.switch(url, drain_timeout_s=1))["active"] == url
        assert (await control.status())["active"] == url
    finally:
        await control.close()
        await runner.cleanup()
        await router.close()
