"""How the outcome of an attempt becomes the ``TaskResult`` the scheduler receives.

===============  ======================  ==============================================
outcome          set fields              when
===============  ======================  ==============================================
SUCCEEDED        ``result_json``         the handler returned (dict; None -> {}; any other
                                         JSON value x -> {"value": x}); canonical JSON
FAILED           ``error``,              the handler raised; ``non_retryable`` for
                 ``non_retryable``       :class:`PermanentError`, an unknown type, a payload
                                         that is not an object, a result that is not JSON
TIMED_OUT        ``error``               the lease's ``timeout`` passed first
CANCELLED        ``error`` (the reason)  the scheduler sent ``cancel``
RETURNED         ``error`` (why)         the worker gives it back unfinished (draining)
===============  ======================  ==============================================

``lease_id`` and ``task_id`` are always set. ``started_at`` (:func:`started_at`) is set on
every result of a lease whose handler was started, whatever the outcome, and left unset for
a lease the worker never started (RETURNED for want of a slot or while draining, an unknown
type, a payload that is not an object). Pure functions: unit-tested without a loop.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.convert import MICROS, dumps_json, timestamp_from_micros
from orchestrator_client.protocol import MAX_MESSAGE_BYTES

from .errors import PermanentError, TaskFailed

#: Longer error texts are cut: they are for people, and travel in every attempt record.
MAX_ERROR_CHARS = 4000
#: A bigger result fails the task: leave room in the message for the rest of the batch.
MAX_RESULT_BYTES = MAX_MESSAGE_BYTES // 2

Outcome = pb.ResultOutcome


def normalise(value: Any) -> dict[str, Any]:
    """The handler's return value as the result object."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return {"value": value}


def encode(value: Any) -> bytes:
    """Canonical JSON bytes of the result; ``ValueError`` if it is not JSON (NaN included)."""
    result = normalise(value)
    try:
        json.dumps(result, allow_nan=False)  # dumps_json would let NaN through
        data = dumps_json(result).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the result is not JSON: {error_text(exc)}") from exc
    if len(data) > MAX_RESULT_BYTES:
        raise ValueError(f"the result is too large: {len(data)} bytes > {MAX_RESULT_BYTES}")
    return data


def error_text(exc: BaseException) -> str:
    """``TaskFailed`` speaks for itself; anything else reads ``"ExceptionType: message"``."""
    message = str(exc)
    if isinstance(exc, TaskFailed):
        text = message or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _result(lease: pb.Lease, outcome: pb.ResultOutcome.ValueType, **fields: Any) -> pb.TaskResult:
    return pb.TaskResult(lease_id=lease.lease_id, task_id=lease.task_id, outcome=outcome, **fields)


def succeeded(lease: pb.Lease, value: Any) -> pb.TaskResult:
    try:
        data = encode(value)
    except ValueError as exc:
        return failed(lease, str(exc), retryable=False)
    return _result(lease, Outcome.RESULT_OUTCOME_SUCCEEDED, result_json=data)


def failed(lease: pb.Lease, error: str, *, retryable: bool) -> pb.TaskResult:
    return _result(
        lease, Outcome.RESULT_OUTCOME_FAILED, error=_cut(error), non_retryable=not retryable
    )


def from_exception(lease: pb.Lease, exc: BaseException) -> pb.TaskResult:
    return failed(lease, error_text(exc), retryable=not isinstance(exc, PermanentError))


def timed_out(lease: pb.Lease, seconds: float) -> pb.TaskResult:
    return _result(lease, Outcome.RESULT_OUTCOME_TIMED_OUT, error=f"timed out after {seconds:g}s")


def cancelled(lease: pb.Lease, reason: str) -> pb.TaskResult:
    return _result(
        lease, Outcome.RESULT_OUTCOME_CANCELLED, error=_cut(reason or "cancelled by the scheduler")
    )


def returned(lease: pb.Lease, reason: str) -> pb.TaskResult:
    return _result(lease, Outcome.RESULT_OUTCOME_RETURNED, error=_cut(reason))


def started_at(result: pb.TaskResult, epoch_seconds: float) -> pb.TaskResult:
    """Set ``result.started_at`` (wall-clock seconds since the epoch, UTC) and return it."""
    result.started_at.CopyFrom(timestamp_from_micros(round(epoch_seconds * MICROS)))
    return result
