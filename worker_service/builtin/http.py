"""``bar`` (task-runner) and ``process_data`` (the CSV batch's fetch → sleep → print).

No internet is assumed: the URL comes from the payload's ``url`` or from the worker's
configuration (``--bar-url``, ``--fetch-url``); with neither, the task fails at once with a
permanent "no url" error rather than guessing a public site.

Each request opens its own short-lived ``aiohttp`` session: simple and leak-free; a worker
fetching thousands of URLs a second from one host would want a shared session instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ..context import TaskContext
from ..errors import PermanentError, TaskFailed
from ..registry import handler
from ._payload import optional_number, optional_str

#: Statuses worth retrying; any other 4xx will fail the same way next time.
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


class FetchFailed(TaskFailed):
    """The HTTP request did not get an answer (or got an error status)."""


async def fetch(url: str, limit_seconds: float) -> tuple[int, bytes]:
    """GET ``url``: ``(status, body)``; no answer at all -> :class:`FetchFailed`."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit_seconds)) as session,
            session.get(url) as response,
        ):
            return response.status, await response.read()
    except aiohttp.InvalidURL as exc:
        raise PermanentError(f"fetch failed: {url}: invalid URL ({exc})") from exc
    except TimeoutError as exc:
        raise FetchFailed(f"fetch failed: {url}: no answer within {limit_seconds:g}s") from exc
    except aiohttp.ClientError as exc:
        raise FetchFailed(f"fetch failed: {url}: {str(exc) or type(exc).__name__}") from exc


def _url(payload: dict[str, Any], configured: str, flag: str) -> str:
    url = optional_str(payload, "url", "") or configured
    if not url:
        raise PermanentError(f'no url: give the payload a "url" or start the worker with {flag}')
    return url


@handler("bar")
async def bar(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """GET the URL and print the status code.

    Any answer is a success, 404 and 500 included: like the reference, ``bar`` reports the
    code rather than judging it. Only no answer at all (refused, DNS, timeout) fails.
    """
    url = _url(payload, ctx.settings.bar_url, "--bar-url")
    status, _ = await fetch(url, ctx.settings.http_timeout)
    print(status, flush=True)
    return {"status_code": status, "url": url}


@handler("process_data")
async def process_data(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fetch the URL, sleep ``sleep_seconds`` (default 1), print a line about it.

    An HTTP error status fails the task (the CSV reference's "fetch failure"): 5xx, 408, 425
    and 429 may pass later so they are retryable; other 4xx are permanent.
    """
    url = _url(payload, ctx.settings.fetch_url, "--fetch-url")
    sleep_seconds = optional_number(payload, "sleep_seconds", 1.0, minimum=0, maximum=86_400)
    status, body = await fetch(url, ctx.settings.http_timeout)
    if status >= 400:
        error = f"fetch failed: {url}: HTTP {status}"
        if status < 500 and status not in _RETRYABLE_STATUSES:
            raise PermanentError(error)
        raise FetchFailed(error)
    await asyncio.sleep(sleep_seconds)
    print(f"Processed task {ctx.task_id}: HTTP {status}, {len(body)} bytes", flush=True)
    return {"status_code": status, "bytes": len(body), "url": url}
