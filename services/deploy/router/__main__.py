"""Run one pipeline's stable endpoint: ``python -m services.deploy.router --port P --admin-socket PATH``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

import uvloop
from aiohttp import web

from services.deploy.router.proxy import Router, admin_app, public_app
from shared.logs import configure_logging


async def serve(*, host: str, port: int, admin_socket: Path, upstream: str | None) -> None:
    """Listen until SIGTERM or SIGINT, then stop accepting, finish what is in flight and exit."""
    router = Router()
    if upstream:
        await router.switch(upstream, drain_timeout_s=0)
    public = web.AppRunner(public_app(router), access_log=None, handle_signals=False)
    admin = web.AppRunner(admin_app(router), access_log=None, handle_signals=False)
    await public.setup()
    await admin.setup()
    admin_socket.unlink(missing_ok=True)
    await web.UnixSite(admin, str(admin_socket)).start()
    await web.TCPSite(public, host, port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await public.cleanup()
    await admin.cleanup()
    await router.close()
    with contextlib.suppress(FileNotFoundError):
        admin_socket.unlink()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(prog="python -m services.deploy.router")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-socket", type=Path, required=True)
    parser.add_argument("--upstream", default=None)
    args = parser.parse_args()
    configure_logging("deploy-router")
    # uvloop: the router only moves bytes between sockets, and uvloop's C event loop and transports
    # make each proxied request cost a fraction of the CPU asyncio's pure-Python ones do.
    uvloop.run(serve(host=args.host, port=args.port, admin_socket=args.admin_socket, upstream=args.upstream))


if __name__ == "__main__":
    main()
