"""``bar`` and ``process_data`` against a real local aiohttp server (no internet)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.http_site import local_site, refused_url
from worker_service import HandlerSettings, PermanentError, TaskContext
from worker_service.builtin import http


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with local_site() as url:
        yield url


@pytest.fixture
def refused() -> Iterator[str]:
    with refused_url() as url:
        yield url


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


async def test_bar_without_an_answer_fails(refused: str) -> None:
    with pytest.raises(http.FetchFailed) as caught:
        await http.bar({"url": refused}, ctx())
    assert str(caught.value).startswith(f"fetch failed: {refused}: Cannot connect to host")
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


async def test_process_data_fetch_failures(site: str, refused: str) -> None:
    with pytest.raises(PermanentError) as missing:
        await http.process_data({"url": f"{site}/missing", "sleep_seconds": 0}, ctx())
    assert str(missing.value) == f"fetch failed: {site}/missing: HTTP 404"

    with pytest.raises(http.FetchFailed) as busy:
        await http.process_data({"url": f"{site}/busy", "sleep_seconds": 0}, ctx())
    assert str(busy.value) == f"fetch failed: {site}/busy: HTTP 503"
    assert not isinstance(busy.value, PermanentError)  # 5xx may pass later

    with pytest.raises(http.FetchFailed, match=f"fetch failed: {refused}: Cannot connect"):
        await http.process_data({"url": refused}, ctx())
