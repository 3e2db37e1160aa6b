"""How clients and workers open gRPC channels to the scheduler."""

from __future__ import annotations

import grpc

from .protocol import MAX_MESSAGE_BYTES


def channel_options(max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Message limits plus HTTP/2 keepalive, so a silently dead link is noticed.

    The scheduler's server options allow pings this often (see the scheduler's
    ``grpc_server`` module); keep the two in step.
    """
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def open_channel(target: str, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """An insecure ``grpc.aio`` channel to ``target`` (``host:port``)."""
    return grpc.aio.insecure_channel(target, options=channel_options(max_message_bytes))
