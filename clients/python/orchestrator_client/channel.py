"""How clients and workers open gRPC channels to the scheduler: TLS and bearer tokens.

With TLS (:class:`TlsConfig`), a token travels as gRPC call credentials
(``authorization: Bearer <token>``) on the encrypted channel. Without TLS, the token is sent
as plain metadata (:func:`call_metadata`): readable by anyone on the path, so for loopback
development only — the scheduler refuses to listen beyond loopback without TLS unless told
``--insecure``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from .protocol import MAX_MESSAGE_BYTES

AUTHORIZATION_KEY = "authorization"


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the scheduler, from PEM files (read each time a channel opens, so that
    renewed certificates are picked up on the next connection).

    ``ca_file``: the CA that signed the scheduler's certificate (default: the system's
    trusted roots). ``cert_file``/``key_file``: this side's certificate for mutual TLS.
    ``server_name``: the name to expect in the scheduler's certificate instead of the host
    of the address (for tests and for addresses the certificate does not name).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both cert_file and key_file")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int | str]]:
    """Message limits plus HTTP/2 keepalive, so a silently dead link is noticed.

    The scheduler's server options allow pings this often (see the scheduler's
    ``api/server.py``); keep the two in step.
    """
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        # Any ping in flight (keepalive or flow control) waits this long for its answer;
        # gRPC's default is a minute, which would hide a dead link behind a pending ping.
        ("grpc.http2.ping_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def open_channel(
    target: str,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    *,
    tls: TlsConfig | None = None,
    token: str | None = None,
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``target`` (``host:port``): secure with ``tls``, and then
    carrying ``token`` on every call; insecure without (see :func:`call_metadata`)."""
    options = channel_options(max_message_bytes)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = tls.credentials()
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(target, credentials, options=options)


def call_metadata(token: str | None, tls: TlsConfig | None) -> tuple[tuple[str, str], ...]:
    """Metadata each call must add itself: the token, when the channel is insecure (a
    secure channel carries it as call credentials)."""
    if token and tls is None:
        return ((AUTHORIZATION_KEY, f"Bearer {token}"),)
    return ()
