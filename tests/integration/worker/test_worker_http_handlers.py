"""``bar`` and ``process_data`` against a real local aiohttp server (no internet).

The site is on loopback, which the fetch policy refuses unless allowed: most tests run with
``fetch_allow=("127.0.0.1",)`` (the worker's ``--fetch-allow 127.0.0.1``); the SSRF tests
below take it away, or point a redirect or a DNS answer somewhere else.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from tests.support.http_site import local_site, refused_url
from worker_service import HandlerSettings, PermanentError, TaskContext
from worker_service import fetch_policy as policy
from worker_service.builtin import http

LOCAL = ("127.0.0.1",)


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async with local_site() as url:
        yield url


@pytest.fixture
def refused() -> Iterator[str]:
    with refused_url() as url:
        yield url


def ctx(**settings: Any) -> TaskContext:
    settings.setdefault("fetch_allow", LOCAL)
    return TaskContext(
        task_id="T7",
        type="http",
        attempt=1,
        max_attempts=3,
        lease_id="L7",
        worker_id="w",
        settings=HandlerSettings(**settings),
    )


def refusal(url: str, address: str, reason: str) -> str:
    return f"fetch refused: {url} resolves to {address} ({reason}); allow it with --fetch-allow"


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
    with pytest.raises(PermanentError, match=r"invalid URL \(only http:// and https://"):
        await http.bar({"url": "file:///etc/passwd"}, ctx())
    with pytest.raises(PermanentError, match="invalid URL"):
        await http.process_data({"url": "example.com/no-scheme"}, ctx())


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


# --- SSRF: what may be fetched -------------------------------------------------------------


async def test_loopback_is_refused_without_an_allowlist_and_nothing_is_sent() -> None:
    seen: list[str] = []
    async with local_site(log=seen) as site:
        for handler in (http.bar, http.process_data):
            with pytest.raises(http.FetchRefused) as caught:
                await handler({"url": f"{site}/ok", "sleep_seconds": 0}, ctx(fetch_allow=()))
            assert str(caught.value) == refusal(f"{site}/ok", "127.0.0.1", "loopback")
            assert isinstance(caught.value, PermanentError)  # never retried
        # An allowlist that does not cover it changes nothing.
        with pytest.raises(http.FetchRefused):
            await http.bar({"url": f"{site}/ok"}, ctx(fetch_allow=("10.0.0.0/8", "other.test")))
    assert seen == [], "a refused target must not receive a request"


@pytest.mark.parametrize(
    ("url", "address", "reason"),
    [
        ("http://10.1.2.3/x", "10.1.2.3", "private"),
        ("http://172.16.0.1:8080/", "172.16.0.1", "private"),
        ("https://192.168.0.1/admin", "192.168.0.1", "private"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
            "link-local, cloud metadata service",
        ),
        ("http://169.254.1.1/", "169.254.1.1", "link-local"),
        ("http://100.64.0.1/", "100.64.0.1", "shared address space"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
        ("http://0.0.0.0:8080/", "0.0.0.0", "unspecified"),
        ("http://127.8.9.10/", "127.8.9.10", "loopback"),
        ("http://[::1]:8080/", "::1", "loopback"),
        ("http://[::]/", "::", "unspecified"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1", "loopback, IPv4 127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe", "link-local, cloud metadata"),
        ("http://[64:ff9b::a00:1]/", "64:ff9b::a00:1", "private, IPv4 10.0.0.1"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://[fd00::1]/", "fd00::1", "private"),
        ("http://[ff02::1]/", "ff02::1", "multicast"),
    ],
)
async def test_non_public_addresses_are_refused_before_any_connection(
    url: str, address: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connection(*args: object) -> None:
        raise AssertionError("a refused target must not be connected to")

    monkeypatch.setattr(policy, "pinned_connector", no_connection)
    with pytest.raises(http.FetchRefused) as caught:
        await http.process_data({"url": url, "sleep_seconds": 0}, ctx(fetch_allow=()))
    assert str(caught.value).startswith(f"fetch refused: {url} resolves to {address} ({reason}")
    assert str(caught.value).endswith("; allow it with --fetch-allow")


@pytest.mark.parametrize(
    "allow",
    [("127.0.0.1",), ("127.0.0.0/8",), ("10.0.0.0/8", "127.0.0.1/32"), ("::1", "[127.0.0.1]")],
)
async def test_an_allowlist_of_addresses_or_networks_lets_the_site_through(
    allow: Sequence[str],
) -> None:
    seen: list[str] = []
    async with local_site(log=seen) as site:
        allowed = ctx(fetch_allow=tuple(allow))
        result = await http.process_data({"url": f"{site}/ok", "sleep_seconds": 0}, allowed)
        assert result["status_code"] == 200
        assert (await http.bar({"url": f"{site}/ok"}, allowed))["status_code"] == 200
    assert len(seen) == 2


async def test_ipv6_loopback_is_refused_unless_allowed() -> None:
    seen: list[str] = []
    async with local_site("::1", log=seen) as site:
        assert site.startswith("http://[::1]:")
        with pytest.raises(http.FetchRefused) as caught:
            await http.bar({"url": f"{site}/ok"}, ctx())  # 127.0.0.1 is not ::1
        assert str(caught.value) == refusal(f"{site}/ok", "::1", "loopback")
        assert seen == []
        assert (await http.bar({"url": f"{site}/ok"}, ctx(fetch_allow=("::1",))))[
            "status_code"
        ] == 200
        assert len(seen) == 1


async def test_a_name_resolving_to_loopback_is_refused_unless_allowed() -> None:
    seen: list[str] = []
    async with local_site(log=seen) as site:
        url = f"http://localhost:{URL(site).port}/ok"
        with pytest.raises(http.FetchRefused) as caught:
            await http.bar({"url": url}, ctx(fetch_allow=()))
        assert re.fullmatch(
            re.escape(f"fetch refused: {url} resolves to ")
            + r"(127\.0\.0\.1|::1) \(loopback\); allow it with --fetch-allow",
            str(caught.value),
        ), caught.value
        assert seen == []
        # Allowed by name: whatever the name resolves to.
        assert (await http.bar({"url": url}, ctx(fetch_allow=("LOCALHOST.",))))[
            "status_code"
        ] == 200
        assert seen == [f"localhost:{URL(site).port} /ok"]
        # A listed name does not allow its address written out.
        with pytest.raises(http.FetchRefused):
            await http.bar({"url": f"{site}/ok"}, ctx(fetch_allow=("localhost",)))


async def test_a_name_that_does_not_resolve_fails_and_may_be_retried() -> None:
    with pytest.raises(http.FetchFailed) as caught:
        await http.bar({"url": "http://no-such-host.invalid/"}, ctx())
    assert str(caught.value).startswith(
        "fetch failed: http://no-such-host.invalid/: cannot resolve no-such-host.invalid"
    )
    assert not isinstance(caught.value, PermanentError)


# --- SSRF: redirects ---------------------------------------------------------------------


def redirect(site: str, to: str) -> str:
    return f"{site}/redirect?{urlencode({'to': to})}"


async def test_a_redirect_to_a_refused_target_is_refused_before_it_is_sent() -> None:
    first: list[str] = []
    second: list[str] = []
    async with (
        local_site("127.0.0.1", log=first) as allowed,
        local_site("127.0.0.2", log=second) as other,
    ):
        start = redirect(allowed, f"{other}/ok")
        with pytest.raises(http.FetchRefused) as caught:
            await http.process_data({"url": start, "sleep_seconds": 0}, ctx())
        assert str(caught.value) == (
            f"fetch refused: {start} redirects to {other}/ok, which resolves to 127.0.0.2 "
            "(loopback); allow it with --fetch-allow"
        )
        assert len(first) == 1 and second == []

        metadata = redirect(allowed, "http://169.254.169.254/latest/meta-data/")
        with pytest.raises(http.FetchRefused, match=r"169\.254\.169\.254 \(link-local, cloud"):
            await http.bar({"url": metadata}, ctx())

        # Allowed both ways, the redirect is followed; bar reports the last hop's status.
        both = ctx(fetch_allow=("127.0.0.1", "127.0.0.2"))
        result = await http.process_data({"url": start, "sleep_seconds": 0}, both)
        assert (result["status_code"], result["bytes"]) == (200, 5)
        assert (await http.bar({"url": redirect(allowed, f"{other}/missing")}, both))[
            "status_code"
        ] == 404
        host = URL(other).raw_authority
        assert second == [f"{host} /ok", f"{host} /missing"]


async def test_relative_redirects_and_the_redirect_limit(site: str) -> None:
    url = "/ok"
    for _ in range(http.MAX_REDIRECTS):
        url = f"/redirect?{urlencode({'to': url})}"
    result = await http.process_data({"url": f"{site}{url}", "sleep_seconds": 0}, ctx())
    assert result["status_code"] == 200

    too_many = f"{site}/redirect?{urlencode({'to': url})}"
    with pytest.raises(http.FetchFailed) as caught:
        await http.bar({"url": too_many}, ctx())
    assert str(caught.value) == f"fetch failed: {too_many}: more than 5 redirects"

    odd = redirect(site, "file:///etc/passwd")
    with pytest.raises(PermanentError, match="redirected to invalid URL 'file:///etc/passwd'"):
        await http.bar({"url": odd}, ctx())


# --- Size and time -----------------------------------------------------------------------


async def test_a_response_over_the_size_cap_fails_for_good(site: str) -> None:
    small = ctx(fetch_max_bytes=1000)
    fits = await http.process_data({"url": f"{site}/bytes/1000", "sleep_seconds": 0}, small)
    assert fits["bytes"] == 1000

    declared = f"{site}/bytes/1001"
    with pytest.raises(PermanentError) as caught:
        await http.process_data({"url": declared, "sleep_seconds": 0}, small)
    assert str(caught.value) == (
        f"fetch failed: {declared}: response too large (1001 bytes > --fetch-max-bytes 1000)"
    )

    streamed = f"{site}/stream/{10 * 1024 * 1024}"  # no Content-Length: counted while read
    with pytest.raises(PermanentError) as caught:
        await http.process_data({"url": streamed, "sleep_seconds": 0}, small)
    assert str(caught.value) == (
        f"fetch failed: {streamed}: response too large (more than --fetch-max-bytes 1000)"
    )

    # bar does not read the body: a large one is no failure.
    assert (await http.bar({"url": streamed}, small))["status_code"] == 200


async def test_the_whole_fetch_has_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow_lookup(host: str, port: int) -> list[policy.IPAddress]:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    monkeypatch.setattr(policy, "lookup", slow_lookup)
    with pytest.raises(http.FetchFailed) as caught:
        await http.bar({"url": "http://slow.test/"}, ctx(http_timeout=0.05))
    assert str(caught.value) == "fetch failed: http://slow.test/: no answer within 0.05s"


# --- SSRF: the checked address is the one connected to -----------------------------------


async def test_the_name_is_looked_up_once_and_the_checked_address_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a second lookup would answer 127.0.0.2, which is not allowed; the fetch
    never makes one, and connects to the 127.0.0.1 it checked."""
    checked: list[str] = []
    rebound: list[str] = []
    async with local_site("127.0.0.1", log=checked) as site:
        port = URL(site).port
        assert port is not None
        async with local_site("127.0.0.2", log=rebound, port=port):
            answers = [["127.0.0.1"], ["127.0.0.2"]]
            asked: list[str] = []

            async def rebinding_lookup(host: str, port: int) -> list[policy.IPAddress]:
                asked.append(host)
                return [ip_address(a) for a in answers[min(len(asked), 2) - 1]]

            monkeypatch.setattr(policy, "lookup", rebinding_lookup)
            url = f"http://rebind.test:{port}/ok"
            result = await http.process_data({"url": url, "sleep_seconds": 0}, ctx())
            assert result["status_code"] == 200
            assert asked == ["rebind.test"]
            assert checked == [f"rebind.test:{port} /ok"] and rebound == []

            # The other way round: refused on the one lookup, whatever a second would say.
            answers.reverse()
            asked.clear()
            with pytest.raises(http.FetchRefused, match=r"resolves to 127\.0\.0\.2 \(loopback\)"):
                await http.bar({"url": url}, ctx())
            assert asked == ["rebind.test"] and rebound == []


async def test_the_pinned_connector_reaches_only_the_checked_address() -> None:
    seen: list[str] = []
    async with local_site(log=seen) as site:
        port = URL(site).port
        loopback = ip_address("127.0.0.1")
        connector = policy.pinned_connector("pinned.test", [loopback])
        async with aiohttp.ClientSession(connector=connector) as session:
            # pinned.test does not exist in DNS: only the pin makes this work.
            async with session.get(f"http://pinned.test:{port}/ok") as response:
                assert response.status == 200
            # Any other name is not looked up at all.
            with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
                await session.get(f"http://localhost:{port}/ok")
            assert "'localhost' was not checked" in str(caught.value.os_error)
    assert seen == [f"pinned.test:{port} /ok"]
