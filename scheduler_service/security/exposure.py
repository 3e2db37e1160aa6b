"""The rule for listening beyond loopback: only with authentication and TLS, or --insecure.

Loopback is ``localhost``, ``127.0.0.0/8`` and ``::1``; anything else (``0.0.0.0``, ``::``,
an empty host, a host name, a routable address) is exposed. An exposed listener needs
authentication (``--auth-tokens`` or ``--tls-client-ca``) and TLS (``--tls-cert``, so that
tokens never cross the network in clear); ``--insecure`` waives the rule.
"""

from __future__ import annotations

import ipaddress


def listen_host(address: str) -> str:
    """``host`` of ``host:port`` (``[::1]:50051`` -> ``::1``)."""
    host = address.rpartition(":")[0] if ":" in address else address
    return host.strip().removeprefix("[").removesuffix("]")


def is_loopback(address: str) -> bool:
    host = listen_host(address)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(
    name: str, address: str, *, authenticated: bool, tls: bool, insecure: bool
) -> str | None:
    """Why listening on ``address`` is refused, or None."""
    if insecure or is_loopback(address):
        return None
    missing = [
        what
        for what, ok in (
            ("authentication (--auth-tokens or --tls-client-ca)", authenticated),
            ("TLS (--tls-cert and --tls-key)", tls),
        )
        if not ok
    ]
    if not missing:
        return None
    return (
        f"refusing to listen on {address} ({name}, not a loopback address) without "
        f"{' and '.join(missing)}; configure them, listen on 127.0.0.1, or pass --insecure "
        "to accept an unprotected listener"
    )
