"""Typed reads from gRPC response streams.

``call.read()`` is typed as ``object`` (a message or ``grpc.aio.EOF``); this narrows it.
"""

from __future__ import annotations

from typing import Any, TypeVar

import grpc

T = TypeVar("T")


async def read_message(
    call: grpc.aio.UnaryStreamCall[Any, T] | grpc.aio.StreamStreamCall[Any, T], kind: type[T]
) -> T:
    """The next message of ``call``, which must be a ``kind`` (not the end of the stream)."""
    message = await call.read()
    assert isinstance(message, kind), f"expected a {kind.__name__}, got {message!r}"
    return message
