"""Where the fetching handlers (``bar``, ``process_data``) may connect: the SSRF guard.

A task's payload names the URL, so whoever can create tasks can make the worker send
requests from inside its network. The rule:

* **Public addresses only, by default.** A target is refused when it is (or resolves to)
  an address that is not globally routable: loopback, private (RFC 1918, IPv6 unique
  local), link-local (169.254.0.0/16 with the cloud metadata service 169.254.169.254,
  fe80::/10), multicast, unspecified, shared (100.64.0.0/10), documentation, benchmarking,
  reserved and broadcast ranges. IPv6 addresses that carry an IPv4 address (IPv4-mapped
  ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4
  address.
* **An allowlist opens the rest** (``--fetch-allow``, :class:`FetchAllowlist`): IP
  addresses and CIDR networks allow the addresses they contain; a host name allows that
  exact name (whatever it resolves to).
* **Every address counts.** A name is looked up once (:func:`lookup`) and refused when any
  of its addresses is refused, not just the first.
* **The checked addresses are the only ones used.** The connection is made through a
  :class:`PinnedResolver`, which answers the HTTP client's own lookup with the addresses
  that were checked, and nothing else: a DNS answer that changes between the check and the
  connection (DNS rebinding) is never seen.

This module only decides; :mod:`worker_service.builtin.http` turns its answers into task
errors and follows redirects, checking every hop.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Ranges that are not the public internet, and what to call them. The longest matching
# prefix names an address (169.254.169.254 is "link-local, cloud metadata service").
_SPECIAL_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(network), name)
    for network, name in (
        ("0.0.0.0/8", "this network"),
        ("0.0.0.0/32", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("169.254.169.254/32", "link-local, cloud metadata service"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "discard-only"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "private"),
        ("fd00:ec2::254/128", "private, cloud metadata service"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
#: IPv6 global unicast; everything else in IPv6 that no range above names is "reserved".
_IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")

#: A host name as ``--fetch-allow`` takes it: letters, digits, ``-`` and ``_`` labels.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, NAT64, 6to4), if any."""
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not on the public internet (``"loopback"``, ``"private"`` ...), or
    ``None`` when it is a global address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = non_public_reason(inner)
        return None if reason is None else f"{reason}, IPv4 {inner}"
    matches = [(net.prefixlen, name) for net, name in _SPECIAL_RANGES if address in net]
    if matches:
        return max(matches)[1]
    if isinstance(address, IPv6Address) and address not in _IPV6_GLOBAL_UNICAST:
        return "reserved"
    if not address.is_global:  # anything the table misses that Python knows of
        return "not globally routable"
    return None


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA (``Bücher.example.`` -> ``xn--bcher-kva.example``)."""
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host


def parse_allow_entry(text: str) -> IPNetwork | str:
    """One ``--fetch-allow`` entry: an IP address (``127.0.0.1``, ``::1``, ``[::1]``), a CIDR
    network (``10.0.0.0/8``) or a host name (``internal.example``); ``ValueError`` else."""
    entry = text.strip()
    if not entry:
        raise ValueError("an empty entry")
    bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
    if "://" in bare:
        raise ValueError(f"{entry!r} is a URL: give its host name or IP address only")
    if "/" in bare:
        try:
            return ip_network(bare, strict=True)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a CIDR network: {exc}") from None
    try:
        return ip_network(bare)  # one address: a /32 or /128
    except ValueError:
        pass
    try:
        host = normalize_host(bare)
    except UnicodeError:
        host = ""
    # All-digit labels ("127.1", "2130706433") are legacy IP spellings, not names.
    if not _HOST_NAME.match(host) or host.replace(".", "").isdigit():
        raise ValueError(
            f"{entry!r} is not an IP address, a CIDR network (10.0.0.0/8) or a host name"
        )
    return host


@dataclass(frozen=True)
class FetchAllowlist:
    """Targets allowed besides the public internet: exact host names and IP networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> FetchAllowlist:
        """From ``--fetch-allow`` entries; ``ValueError`` names the first bad one."""
        return _parse_allowlist(tuple(entries))

    def allows_host(self, host: str) -> bool:
        return normalize_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


@functools.lru_cache(maxsize=64)
def _parse_allowlist(entries: tuple[str, ...]) -> FetchAllowlist:
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        parsed = parse_allow_entry(entry)
        if isinstance(parsed, str):
            hosts.add(parsed)
        elif parsed not in networks:
            networks.append(parsed)
    return FetchAllowlist(frozenset(hosts), tuple(networks))


@dataclass(frozen=True)
class Refusal:
    """Why a target may not be fetched: ``address`` is ``reason`` and not allowed."""

    address: IPAddress
    reason: str


def check(host: str, addresses: Sequence[IPAddress], allowlist: FetchAllowlist) -> Refusal | None:
    """The first of ``host``'s ``addresses`` that may not be fetched, or ``None`` when all
    of them may (a listed host name allows all its addresses)."""
    if allowlist.allows_host(host):
        return None
    for address in addresses:
        reason = non_public_reason(address)
        if reason is not None and not allowlist.allows_address(address):
            return Refusal(address, reason)
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is written as one (``127.0.0.1``, ``::1``)."""
    try:
        return ip_address(host)
    except ValueError:
        return None


async def lookup(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to for a TCP connection, in the resolver's order,
    without repeats; ``OSError`` (``socket.gaierror``) when it does not resolve."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
    return addresses


class PinnedResolver(AbstractResolver):
    """A resolver for one host that answers with the addresses checked before, only.

    The HTTP client asks its resolver for the host of the URL; this one never looks
    anything up, so the connection goes to an address that :func:`check` saw. Any other
    host name is an error (``OSError``), not a lookup.
    """

    def __init__(self, host: str, addresses: Sequence[IPAddress]) -> None:
        if not addresses:
            raise ValueError("a pinned resolver needs at least one address")
        self.host = normalize_host(host)
        self.addresses = tuple(addresses)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if normalize_host(host) != self.host:
            raise OSError(f"{host!r} was not checked (only {self.host!r} is); not resolving it")
        results: list[ResolveResult] = []
        for address in self.addresses:
            address_family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": address_family,
                    "proto": socket.IPPROTO_TCP,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not results:
            raise OSError(f"{host!r} has no checked address of family {family!r}")
        return results

    async def close(self) -> None:
        pass


def pinned_connector(host: str, addresses: Sequence[IPAddress]) -> aiohttp.TCPConnector:
    """A connector that reaches ``host`` at ``addresses`` only, never resolving a name.

    A URL written with an IP address never asks a resolver: it is its own checked address.
    """
    return aiohttp.TCPConnector(
        resolver=PinnedResolver(host, addresses), use_dns_cache=False, force_close=True
    )
