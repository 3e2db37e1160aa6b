"""Domain errors to gRPC status codes, in one table; everything else is INTERNAL.

Every servicer method is wrapped by :func:`unary` or :func:`server_stream`, so a
handler raises :class:`~scheduler_service.domain.errors.SchedulerError` subclasses and
never touches status codes itself. An unexpected exception is logged with its traceback
and a reference, and the caller gets INTERNAL with that reference only: no internals leak.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ..domain import errors
from ..engine.metrics import SchedulerMetrics
from ..security.access import Caller

log = logging.getLogger(__name__)

STATUS_OF: dict[type[errors.SchedulerError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: errors.SchedulerError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.UNKNOWN


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Servicer = Any


#: The most UTF-8 bytes of an error message sent back. Messages quote the offending value,
#: and gRPC carries the message percent-encoded in a trailer (up to 3 bytes per byte) that
#: the client refuses past 8 KiB: an echoed huge value would turn the precise status into
#: an opaque RESOURCE_EXHAUSTED "metadata size exceeds soft limit".
MAX_MESSAGE_BYTES = 1024


def bounded(message: str) -> str:
    """``message`` cut to :data:`MAX_MESSAGE_BYTES` of UTF-8, marked when cut."""
    raw = message.encode()
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    return raw[: MAX_MESSAGE_BYTES - 20].decode(errors="ignore") + "… (truncated)"


async def _abort_for(
    exc: BaseException, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> None:
    if isinstance(exc, errors.SchedulerError):
        await context.abort(status_of(exc), bounded(exc.message))
    reference = secrets.token_hex(4)
    log.error("unexpected error in %s", method, exc_info=exc, extra={"error_ref": reference})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


Context = grpc.aio.ServicerContext[Any, Any]


def unary(
    method: Callable[[Servicer, Req, Context, Caller], Awaitable[Resp]],
) -> Callable[[Servicer, Req, Context, Caller], Awaitable[Resp]]:
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Servicer, request: Req, context: Context, caller: Caller) -> Resp:
        metrics: SchedulerMetrics = self.metrics
        started = time.perf_counter()
        try:
            return await method(self, request, context, caller)
        except (errors.SchedulerError, Exception) as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort_for(exc, context, name)
            raise  # pragma: no cover - abort raises
        finally:
            metrics.grpc_latency.labels(method=name).observe(time.perf_counter() - started)
            metrics.grpc_calls.labels(method=name, code=_code_of(context)).inc()

    return wrapper


def server_stream(
    method: Callable[[Servicer, Req, Context, Caller], AsyncIterator[Resp]],
) -> Callable[[Servicer, Req, Context, Caller], AsyncIterator[Resp]]:
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(
        self: Servicer, request: Req, context: Context, caller: Caller
    ) -> AsyncIterator[Resp]:
        metrics: SchedulerMetrics = self.metrics
        try:
            async for item in method(self, request, context, caller):
                yield item
        except (errors.SchedulerError, Exception) as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await _abort_for(exc, context, name)
        finally:
            metrics.grpc_calls.labels(method=name, code=_code_of(context)).inc()

    return wrapper
