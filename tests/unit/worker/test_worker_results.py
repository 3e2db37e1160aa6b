"""Outcomes of an attempt -> the TaskResult the scheduler receives."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from orchestrator.v1 import worker_service_pb2 as pb
from orchestrator_client.convert import duration_from_seconds
from worker_service import PermanentError, TaskFailed, results
from worker_service.runner import decode_payload, lease_timeout

Outcome = pb.ResultOutcome
LEASE = pb.Lease(lease_id="L1", task_id="T1", type="sum2", attempt=1, max_attempts=3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": "é"}, b'{"a":"\xc3\xa9","b":1}'),
        (None, b"{}"),
        (42, b'{"value":42}'),
        ([1, "x"], b'{"value":[1,"x"]}'),
        ("text", b'{"value":"text"}'),
    ],
)
def test_success_is_canonical_json_of_an_object(value: object, expected: bytes) -> None:
    result = results.succeeded(LEASE, value)
    assert result.outcome == Outcome.RESULT_OUTCOME_SUCCEEDED
    assert (result.lease_id, result.task_id) == ("L1", "T1")
    assert result.result_json == expected
    assert not result.error and not result.non_retryable


@pytest.mark.parametrize("value", [{"x": math.nan}, {"x": object()}, {1: "a", "b": 2}])
def test_a_result_that_is_not_json_fails_for_good(value: object) -> None:
    result = results.succeeded(LEASE, value)
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert result.non_retryable
    assert result.error.startswith("the result is not JSON: ")


def test_a_result_too_large_fails_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "MAX_RESULT_BYTES", 10)
    result = results.succeeded(LEASE, {"text": "x" * 20})
    assert result.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert result.non_retryable
    assert "too large" in result.error


def test_exceptions() -> None:
    retryable = results.from_exception(LEASE, ValueError("bad thing"))
    assert retryable.outcome == Outcome.RESULT_OUTCOME_FAILED
    assert retryable.error == "ValueError: bad thing"
    assert not retryable.non_retryable

    assert results.from_exception(LEASE, KeyError()).error == "KeyError"

    failed = results.from_exception(LEASE, TaskFailed("fetch failed: http://x: refused"))
    assert failed.error == "fetch failed: http://x: refused"
    assert not failed.non_retryable

    permanent = results.from_exception(LEASE, PermanentError("payload field 'first' is required"))
    assert permanent.error == "payload field 'first' is required"
    assert permanent.non_retryable


def test_long_errors_are_cut() -> None:
    result = results.from_exception(LEASE, RuntimeError("x" * 10_000))
    assert len(result.error) == results.MAX_ERROR_CHARS
    assert result.error.endswith("…")


def test_stopped_outcomes() -> None:
    timed_out = results.timed_out(LEASE, 2.5)
    assert timed_out.outcome == Outcome.RESULT_OUTCOME_TIMED_OUT
    assert timed_out.error == "timed out after 2.5s"
    cancelled = results.cancelled(LEASE, "")
    assert cancelled.outcome == Outcome.RESULT_OUTCOME_CANCELLED
    assert cancelled.error == "cancelled by the scheduler"
    returned = results.returned(LEASE, "draining")
    assert returned.outcome == Outcome.RESULT_OUTCOME_RETURNED
    for result in (timed_out, cancelled, returned):
        assert (result.lease_id, result.task_id, result.result_json) == ("L1", "T1", b"")
        assert not result.non_retryable


def test_decode_payload() -> None:
    assert decode_payload(b"") == {}
    assert decode_payload(json.dumps({"a": [1]}).encode()) == {"a": [1]}
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        decode_payload(b"[1]")
    with pytest.raises(ValueError, match="not JSON"):
        decode_payload(b"{oops")
    with pytest.raises(ValueError, match="not JSON"):
        decode_payload(b"\xff")


def test_lease_timeout() -> None:
    assert lease_timeout(pb.Lease()) is None
    assert lease_timeout(pb.Lease(timeout=duration_from_seconds(0))) is None
    assert lease_timeout(pb.Lease(timeout=duration_from_seconds(1.5))) == 1.5


def test_started_at_is_utc_wall_clock_to_the_microsecond() -> None:
    result = results.started_at(results.succeeded(LEASE, None), 1_700_000_000.1234567)
    assert result.HasField("started_at")
    assert (result.started_at.seconds, result.started_at.nanos) == (1_700_000_000, 123_457_000)
    assert result.started_at.ToDatetime(tzinfo=dt.UTC) == dt.datetime(
        2023, 11, 14, 22, 13, 20, 123457, tzinfo=dt.UTC
    )


def test_results_are_built_without_started_at() -> None:
    for result in (results.returned(LEASE, "draining"), results.failed(LEASE, "x", retryable=True)):
        assert not result.HasField("started_at")
