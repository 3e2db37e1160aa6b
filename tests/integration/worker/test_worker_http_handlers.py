"""``bar`` and ``process_data`` against a real local aiohttp server (no internet)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from worker_service import HandlerSettings, PermanentError, TaskContext
from worker_service.builtin import http


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """``http://127.0.0.1:<port>`` serving /ok (200, 5 bytes), /missing (404), /busy (503)."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="try later")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/busy", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL on a port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/x"


def ctx(**settings: object) -> TaskContext:
    return TaskContext(
        task_id="T7",
        type="http",
        attempt=1,
        max_attempts=3,
        lease_id="L7",
        worker_id="w",
        settings=HandlerSettings(**settings),  # type: ignore[arg-type]
    )


async def test_bar_prints_the_status_code(site: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await http.bar({"url": f"{site}/ok"}, ctx()) == {
        "status_code": 200,
        "url": f"{site}/ok",
    }
    # Any answer is a success for bar, like the reference: it reports the code.
    assert (await http.bar({}, ctx(bar_url=f"{site}/missing")))["status_code"] == 404
    assert capsys.readouterr().out == "200\n404\n"


async def test_bar_without_an_answer_fails(refused_url: str) -> None:
    with pytest.raises(http.FetchFailed) as caught:
        await http.bar({"url": refused_url}, ctx())
    assert str(caught.value).startswith(f"fetch failed: {refused_url}: Cannot connect to host")
    assert not isinstance(caught.value, PermanentError)


async def test_an_invalid_url_fails_for_good() -> None:
    with pytest.raises(PermanentError, match="invalid URL"):
        await http.bar({"url": "http://"}, ctx())


async def test_process_data_fetches_sleeps_prints(
    site: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await http.process_data({"sleep_seconds": 0}, ctx(fetch_url=f"{site}/ok"))
    assert result == {"status_code": 200, "bytes": 5, "url": f"{site}/ok"}
    assert capsys.readouterr().out == "Processed task T7: HTTP 200, 5 bytes\n"


async def test_process_data_fetch_failures(site: str, refused_url: str) -> None:
    with pytest.raises(PermanentError) as missing:
        await http.process_data({"url": f"{site}/missing", "sleep_seconds": 0}, ctx())
    assert str(missing.value) == f"fetch failed: {site}/missing: HTTP 404"

    with pytest.raises(http.FetchFailed) as busy:
        await http.process_data({"url": f"{site}/busy", "sleep_seconds": 0}, ctx())
    assert str(busy.value) == f"fetch failed: {site}/busy: HTTP 503"
    assert not isinstance(busy.value, PermanentError)  # 5xx may pass later

    with pytest.raises(http.FetchFailed, match=f"fetch failed: {refused_url}: Cannot connect"):
        await http.process_data({"url": refused_url}, ctx())
