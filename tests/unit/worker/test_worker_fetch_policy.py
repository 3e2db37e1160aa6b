"""The fetch policy (SSRF guard) of ``bar`` and ``process_data``, without a network."""

from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network

import pytest

from worker_service import HandlerSettings
from worker_service.fetch_policy import (
    FetchAllowlist,
    PinnedResolver,
    Refusal,
    check,
    non_public_reason,
    parse_allow_entry,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local, cloud metadata service"),
        ("169.254.0.1", "link-local"),
        ("100.64.0.1", "shared address space"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "this network"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.10", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback, IPv4 127.0.0.1"),
        ("::ffff:10.0.0.1", "private, IPv4 10.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "link-local, cloud metadata service, IPv4 169.254.169.254"),
        ("2002:c0a8:101::1", "private, IPv4 192.168.1.1"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "private, cloud metadata service"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("2001::1", "IETF protocol assignments"),  # Teredo
        ("::7f00:1", "reserved"),  # deprecated IPv4-compatible
        ("4000::1", "reserved"),
    ],
)
def test_non_public_addresses_are_named(address: str, reason: str) -> None:
    assert non_public_reason(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_pass(address: str) -> None:
    assert non_public_reason(ip_address(address)) is None


def test_allow_entries() -> None:
    assert parse_allow_entry(" 127.0.0.1 ") == ip_network("127.0.0.1/32")
    assert parse_allow_entry("10.0.0.0/8") == ip_network("10.0.0.0/8")
    assert parse_allow_entry("[::1]") == ip_network("::1/128")
    assert parse_allow_entry("fd00::/8") == ip_network("fd00::/8")
    assert parse_allow_entry("Internal.Example.") == "internal.example"
    assert parse_allow_entry("bücher.example") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("", "empty"),
        ("10.0.0.1/8", "has host bits set"),
        ("10.0.0.0/33", "not a CIDR network"),
        ("http://internal.example", "is a URL"),
        ("internal.example:8080", "not an IP address, a CIDR network"),
        ("127.1", "not an IP address"),
        ("2130706433", "not an IP address"),
        ("-bad.example", "not an IP address"),
        ("a b", "not an IP address"),
    ],
)
def test_bad_allow_entries_are_refused(entry: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_allow_entry(entry)


def test_the_allowlist_allows_networks_and_exact_names() -> None:
    allow = FetchAllowlist.parse(["127.0.0.1", "10.0.0.0/8", "internal.example", "::1"])
    assert allow.allows_address(ip_address("127.0.0.1"))
    assert allow.allows_address(ip_address("::ffff:127.0.0.1"))  # the same address
    assert allow.allows_address(ip_address("10.200.0.1"))
    assert allow.allows_address(ip_address("::1"))
    assert not allow.allows_address(ip_address("127.0.0.2"))
    assert not allow.allows_address(ip_address("169.254.169.254"))
    assert allow.allows_host("INTERNAL.example.")
    assert not allow.allows_host("sub.internal.example")
    assert not FetchAllowlist.parse([]).allows_address(ip_address("127.0.0.1"))


def test_every_address_of_a_name_is_checked() -> None:
    public, private = ip_address("8.8.8.8"), ip_address("10.0.0.1")
    nothing = FetchAllowlist()
    assert check("a.example", [public], nothing) is None
    assert check("a.example", [public, private], nothing) == Refusal(private, "private")
    assert check("a.example", [public, private], FetchAllowlist.parse(["10.0.0.0/8"])) is None
    assert check("a.example", [private], FetchAllowlist.parse(["a.example"])) is None
    assert check("b.example", [private], FetchAllowlist.parse(["a.example"])) is not None


def test_handler_settings_validate_the_allowlist() -> None:
    settings = HandlerSettings(fetch_allow=("127.0.0.1", "internal.example"))
    assert settings.fetch_allowlist.hosts == frozenset({"internal.example"})
    assert HandlerSettings().fetch_allow == () and HandlerSettings().fetch_max_bytes == 10 << 20
    with pytest.raises(ValueError, match="has host bits set"):
        HandlerSettings(fetch_allow=("10.0.0.1/8",))
    with pytest.raises(TypeError, match="not one string"):
        HandlerSettings(fetch_allow="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fetch_max_bytes"):
        HandlerSettings(fetch_max_bytes=0)


async def test_the_pinned_resolver_answers_with_the_checked_addresses_only() -> None:
    v4, v6 = ip_address("127.0.0.1"), ip_address("::1")
    resolver = PinnedResolver("Pinned.Example.", [v4, v6])
    answers = await resolver.resolve("pinned.example", 8080, family=socket.AF_UNSPEC)
    assert [(a["host"], a["port"], a["family"]) for a in answers] == [
        ("127.0.0.1", 8080, socket.AF_INET),
        ("::1", 8080, socket.AF_INET6),
    ]
    assert all(a["hostname"] == "pinned.example" for a in answers)
    assert all(a["flags"] & socket.AI_NUMERICHOST for a in answers)
    only_v6 = await resolver.resolve("pinned.example.", 80, family=socket.AF_INET6)
    assert [a["host"] for a in only_v6] == ["::1"]
    with pytest.raises(OSError, match=r"'other\.example' was not checked"):
        await resolver.resolve("other.example", 80, family=socket.AF_UNSPEC)
    with pytest.raises(OSError, match="no checked address"):
        await PinnedResolver("x.example", [v4]).resolve("x.example", 80, socket.AF_INET6)
    with pytest.raises(ValueError, match="at least one address"):
        PinnedResolver("x.example", [])
