"""The errors the client library raises.

Every failed gRPC call is turned into one of these by :func:`error_from_rpc` (through
:func:`translated_errors`), the only place that looks at a ``grpc.aio.AioRpcError``; callers
catch a class rather than compare status codes. The tree::

    OrchestratorError
    ├── RPCError                 (.code: grpc.StatusCode, .details: str)
    │   ├── InvalidArgument      INVALID_ARGUMENT
    │   ├── NotFound             NOT_FOUND
    │   ├── AlreadyExists        ALREADY_EXISTS
    │   ├── FailedPrecondition   FAILED_PRECONDITION
    │   ├── ResourceExhausted    RESOURCE_EXHAUSTED
    │   ├── Unauthenticated      UNAUTHENTICATED
    │   ├── PermissionDenied     PERMISSION_DENIED
    │   ├── Unavailable          UNAVAILABLE (retried by the client before it is raised)
    │   ├── DeadlineExceeded     DEADLINE_EXCEEDED
    │   └── Internal             INTERNAL
    └── WatchEnded               a watch stopped before its task reached a terminal state

Any other status code (CANCELLED, UNKNOWN, UNIMPLEMENTED, …) is raised as a plain
:class:`RPCError`. Mistakes in the caller's own arguments (``delay`` together with ``run_at``,
an unknown state name) are ``ValueError``, as in the standard library, because no request
was sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc


class OrchestratorError(Exception):
    """The task orchestrator could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        # The class docstring doubles as the default message, so `raise NotFound()` reads well.
        super().__init__(message or (self.__doc__ or "").strip())


class RPCError(OrchestratorError):
    """The scheduler answered a call with an error status."""

    #: The status code this class stands for; ``RPCError`` itself may carry any other code.
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        details: str | None = None,
        *,
        code: grpc.StatusCode | None = None,
        debug: str = "",
    ) -> None:
        self.code: grpc.StatusCode = code or self.default_code
        self.details: str = details or ""
        #: gRPC's debug string (peer, underlying transport error); for logs, not for users.
        self.debug: str = debug
        super().__init__(f"{self.code.name}: {details}" if details else None)


class InvalidArgument(RPCError):
    """The request has a malformed or out-of-range field."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RPCError):
    """No such task (or task type)."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RPCError):
    """Something with that name or key exists already."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RPCError):
    """The task is not in a state that allows this operation."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(RPCError):
    """A limit was reached (message size, rate or quota)."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(RPCError):
    """The scheduler did not accept the caller's credentials."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RPCError):
    """The caller may not do this."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(RPCError):
    """The scheduler could not be reached (after the client's retries)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RPCError):
    """The call did not finish within its deadline."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(RPCError):
    """The scheduler failed unexpectedly; its logs say why."""

    default_code = grpc.StatusCode.INTERNAL


class WatchEnded(OrchestratorError):
    """The watch ended before the task reached a terminal state."""


_BY_CODE: dict[grpc.StatusCode, type[RPCError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}


def error_from_rpc(exc: grpc.aio.AioRpcError) -> RPCError:
    """The typed error for a failed call; raise it ``from exc`` to keep gRPC's own."""
    code: grpc.StatusCode = exc.code()
    cls = _BY_CODE.get(code, RPCError)
    return cls(exc.details() or "", code=code, debug=exc.debug_error_string() or "")


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Raise the typed error for any ``AioRpcError`` raised inside the block."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from exc
