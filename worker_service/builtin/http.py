"""``bar`` (task-runner) and ``process_data`` (the CSV batch's fetch → sleep → print).

No internet is assumed: the URL comes from the payload's ``url`` or from the worker's
configuration (``--bar-url``, ``--fetch-url``); with neither, the task fails at once with a
permanent "no url" error rather than guessing a public site.

Whoever creates tasks chooses the URL, so every fetch goes through the SSRF guard of
:mod:`worker_service.fetch_policy`:

* only ``http://`` and ``https://`` URLs; the host is looked up once and the request fails
  permanently (:class:`FetchRefused`, ``fetch refused: <url> resolves to 127.0.0.1
  (loopback); allow it with --fetch-allow``) when any of its addresses is not public and not
  allowed by ``--fetch-allow``; nothing is sent to such a target;
* the connection goes to the checked addresses and no others (a pinned resolver: no second
  lookup, so DNS rebinding cannot swap the address after the check);
* redirects (301, 302, 303, 307, 308) are followed by hand, at most
  :data:`MAX_REDIRECTS` of them, each hop checked like the first: a redirect to a refused
  target is refused, before anything is sent there;
* ``process_data`` reads at most ``--fetch-max-bytes`` of body (a larger one fails
  permanently, "response too large"); ``bar`` reads the status line and headers only;
* the whole fetch (lookups, connections, every hop, the body) has ``http_timeout``.

Each hop opens its own short-lived ``aiohttp`` session: simple and leak-free; a worker
fetching thousands of URLs a second from one host would want a shared session instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import hdrs
from yarl import URL

from .. import fetch_policy
from ..context import HandlerSettings, TaskContext
from ..errors import PermanentError, TaskFailed
from ..registry import handler
from ._payload import optional_number, optional_str

#: Statuses worth retrying; any other 4xx will fail the same way next time.
_RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: Statuses whose ``Location`` is followed (with a GET, the only method used here).
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Redirects followed before the fetch fails.
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class FetchFailed(TaskFailed):
    """The HTTP request did not get an answer (or got an error status)."""


class FetchRefused(PermanentError):
    """The URL, or a redirect, leads to an address the fetch policy does not allow."""


async def fetch(
    url: str, settings: HandlerSettings, *, read_body: bool = True
) -> tuple[int, bytes]:
    """GET ``url`` under the fetch policy: ``(status, body)`` of the last hop.

    Refused target -> :class:`FetchRefused`; invalid URL or a body over
    ``settings.fetch_max_bytes`` -> :class:`PermanentError`; no answer at all (refused
    connection, lookup failure, timeout, too many redirects) -> :class:`FetchFailed`.
    With ``read_body=False`` the body is not read and ``b""`` is returned.
    """
    limit = settings.http_timeout
    try:
        async with asyncio.timeout(limit):
            return await _follow(url, settings, read_body)
    except TimeoutError as exc:
        raise FetchFailed(f"fetch failed: {url}: no answer within {limit:g}s") from exc


async def _follow(url: str, settings: HandlerSettings, read_body: bool) -> tuple[int, bytes]:
    allowlist = settings.fetch_allowlist
    target = _target(url, url)
    for hop in range(MAX_REDIRECTS + 1):
        addresses = await _checked_addresses(url, target, allowlist, redirected=hop > 0)
        try:
            status, location, body = await _get(url, target, addresses, settings, read_body)
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"fetch failed: {url}: invalid URL ({exc})") from exc
        except TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            raise FetchFailed(f"fetch failed: {url}: {str(exc) or type(exc).__name__}") from exc
        if location is None:
            return status, body
        target = _target(url, location, base=target)
    raise FetchFailed(f"fetch failed: {url}: more than {MAX_REDIRECTS} redirects")


def _target(url: str, text: str, base: URL | None = None) -> URL:
    """``text`` (``url`` itself, or a redirect's ``Location`` relative to ``base``) as an
    absolute http(s) URL with a host; :class:`PermanentError` otherwise."""
    where = f"{url}: invalid URL" if base is None else f"{url}: redirected to invalid URL {text!r}"
    try:
        target = URL(text) if base is None else base.join(URL(text))
    except (ValueError, TypeError) as exc:
        raise PermanentError(f"fetch failed: {where} ({exc})") from exc
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise PermanentError(f"fetch failed: {where} (only http:// and https:// URLs with a host)")
    return target


async def _checked_addresses(
    url: str, target: URL, allowlist: fetch_policy.FetchAllowlist, *, redirected: bool
) -> list[fetch_policy.IPAddress]:
    """The addresses of ``target``'s host, every one checked; :class:`FetchRefused` when
    one of them is not allowed."""
    host = target.raw_host
    assert host is not None  # _target made sure
    literal = fetch_policy.literal_address(target.host or host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await fetch_policy.lookup(host, target.port or 0)
        except OSError as exc:
            raise FetchFailed(
                f"fetch failed: {url}: cannot resolve {host}: {exc.strerror or exc}"
            ) from exc
    refusal = fetch_policy.check(host, addresses, allowlist)
    if refusal is not None:
        leads = f"{url} redirects to {target}, which" if redirected else url
        raise FetchRefused(
            f"fetch refused: {leads} resolves to {refusal.address} ({refusal.reason}); "
            "allow it with --fetch-allow"
        )
    return addresses


async def _get(
    url: str,
    target: URL,
    addresses: list[fetch_policy.IPAddress],
    settings: HandlerSettings,
    read_body: bool,
) -> tuple[int, str | None, bytes]:
    """One request to ``target`` at ``addresses`` only: ``(status, location, body)``, with
    ``location`` set when the answer is a redirect to follow."""
    assert target.raw_host is not None
    connector = fetch_policy.pinned_connector(target.raw_host, addresses)
    timeout = aiohttp.ClientTimeout(total=settings.http_timeout)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
        session.get(target, allow_redirects=False) as response,
    ):
        if response.status in _REDIRECT_STATUSES:
            location = response.headers.get(hdrs.LOCATION, "").strip()
            if location:
                return response.status, location, b""
        if not read_body:
            return response.status, None, b""
        body = await _read_capped(url, response, settings.fetch_max_bytes)
        return response.status, None, body


async def _read_capped(url: str, response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, or :class:`PermanentError` as soon as it is known to exceed ``max_bytes``
    (from ``Content-Length``, or while reading: the rest is not read)."""
    too_large = f"fetch failed: {url}: response too large"
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise PermanentError(f"{too_large} ({declared} bytes > --fetch-max-bytes {max_bytes})")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise PermanentError(f"{too_large} (more than --fetch-max-bytes {max_bytes})")
    return bytes(body)


def _url(payload: dict[str, Any], configured: str, flag: str) -> str:
    url = optional_str(payload, "url", "") or configured
    if not url:
        raise PermanentError(f'no url: give the payload a "url" or start the worker with {flag}')
    return url


@handler("bar")
async def bar(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """GET the URL and print the status code.

    Any answer is a success, 404 and 500 included: like the reference, ``bar`` reports the
    code rather than judging it. Only no answer at all (refused, DNS, timeout) fails, and a
    target the fetch policy refuses fails for good. The body is not read.
    """
    url = _url(payload, ctx.settings.bar_url, "--bar-url")
    status, _ = await fetch(url, ctx.settings, read_body=False)
    print(status, flush=True)
    return {"status_code": status, "url": url}


@handler("process_data")
async def process_data(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fetch the URL, sleep ``sleep_seconds`` (default 1), print a line about it.

    An HTTP error status fails the task (the CSV reference's "fetch failure"): 5xx, 408, 425
    and 429 may pass later so they are retryable; other 4xx are permanent, and so are a
    refused target and a body over ``--fetch-max-bytes``.
    """
    url = _url(payload, ctx.settings.fetch_url, "--fetch-url")
    sleep_seconds = optional_number(payload, "sleep_seconds", 1.0, minimum=0, maximum=86_400)
    status, body = await fetch(url, ctx.settings)
    if status >= 400:
        error = f"fetch failed: {url}: HTTP {status}"
        if status < 500 and status not in _RETRYABLE_STATUSES:
            raise PermanentError(error)
        raise FetchFailed(error)
    await asyncio.sleep(sleep_seconds)
    print(f"Processed task {ctx.task_id}: HTTP {status}, {len(body)} bytes", flush=True)
    return {"status_code": status, "bytes": len(body), "url": url}
