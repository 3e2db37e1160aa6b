"""A real local HTTP server for handlers that fetch (no test needs the internet)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

from aiohttp import web


@contextlib.asynccontextmanager
async def local_site() -> AsyncIterator[str]:
    """``http://127.0.0.1:<port>`` serving /ok (200, 5 bytes), /missing (404), /busy (503)."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="try later")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/missing", missing)
    app.router.add_get("/busy", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A URL on a port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/x"
