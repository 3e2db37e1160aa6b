"""A real local HTTP server for handlers that fetch (no test needs the internet)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from aiohttp import web


@contextlib.asynccontextmanager
async def local_site(
    host: str = "127.0.0.1", log: list[str] | None = None, port: int = 0
) -> AsyncIterator[str]:
    """``http://<host>:<port>`` (any free port by default) serving /ok (200, 5 bytes),
    /missing (404), /busy (503), /redirect?to=<url> (302 to it), /bytes/<n> (n bytes with a
    Content-Length) and /stream/<n> (n bytes, chunked, no Content-Length).

    Every request that reaches it is appended to ``log`` as ``"<Host header> <path?query>"``.
    """

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="try later")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        left = int(request.match_info["n"])
        while left > 0:
            part = min(left, 16 * 1024)
            await response.write(b"x" * part)
            left -= part
        await response.write_eof()
        return response

    @web.middleware
    async def record(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if log is not None:
            log.append(f"{request.host} {request.path_qs}")
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_get("/ok", ok)
    app.router.add_get("/missing", missing)
    app.router.add_get("/busy", busy)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/bytes/{n}", sized)
    app.router.add_get("/stream/{n}", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound, port = runner.addresses[0][:2]
    try:
        yield f"http://[{bound}]:{port}" if ":" in bound else f"http://{bound}:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A URL on a port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/x"
