"""Every ``AioRpcError`` becomes the typed error for its status code, in one place."""

from __future__ import annotations

import grpc
import pytest

import orchestrator_client as oc
from orchestrator_client._errors import error_from_rpc, translated_errors


def rpc_error(code: grpc.StatusCode, details: str = "boom") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=details,
        debug_error_string="debug info",
    )


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, oc.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, oc.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, oc.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, oc.FailedPrecondition),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, oc.ResourceExhausted),
        (grpc.StatusCode.UNAUTHENTICATED, oc.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, oc.PermissionDenied),
        (grpc.StatusCode.UNAVAILABLE, oc.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, oc.DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, oc.Internal),
    ],
)
def test_each_mapped_code_has_its_class(code: grpc.StatusCode, cls: type[oc.RPCError]) -> None:
    error = error_from_rpc(rpc_error(code, "task t1 not here"))
    assert type(error) is cls
    assert error.code is code
    assert error.details == "task t1 not here"
    assert error.debug == "debug info"
    assert str(error) == f"{code.name}: task t1 not here"


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED],
)
def test_other_codes_are_plain_rpc_errors(code: grpc.StatusCode) -> None:
    error = error_from_rpc(rpc_error(code))
    assert type(error) is oc.RPCError
    assert error.code is code


def test_every_error_is_an_orchestrator_error() -> None:
    assert issubclass(oc.NotFound, oc.RPCError)
    assert issubclass(oc.RPCError, oc.OrchestratorError)
    assert issubclass(oc.WatchEnded, oc.OrchestratorError)
    assert not issubclass(oc.WatchEnded, oc.RPCError)


def test_docstring_is_the_default_message() -> None:
    assert str(oc.NotFound()) == "No such task (or task type)."
    assert oc.NotFound().code is grpc.StatusCode.NOT_FOUND
    assert str(oc.OrchestratorError()) == "The task orchestrator could not do what was asked."


def test_empty_details_fall_back_to_the_docstring() -> None:
    error = error_from_rpc(rpc_error(grpc.StatusCode.INTERNAL, ""))
    assert str(error) == "The scheduler failed unexpectedly; its logs say why."


def test_translated_errors_chains_the_grpc_error() -> None:
    original = rpc_error(grpc.StatusCode.NOT_FOUND)
    with pytest.raises(oc.NotFound) as caught, translated_errors():
        raise original
    assert caught.value.__cause__ is original


def test_translated_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), translated_errors():
        raise KeyError("x")
