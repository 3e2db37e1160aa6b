"""Pure scheduling rules: backoff, transitions, ids, validation, page tokens."""

from __future__ import annotations

import random

import pytest
from google.protobuf import duration_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from scheduler_service.api import page_tokens, validation
from scheduler_service.domain.errors import InvalidArgument
from scheduler_service.domain.ids import IdGenerator, is_valid_id
from scheduler_service.domain.model import AttemptEnd, AttemptOutcome, Backoff, TaskState
from scheduler_service.domain.retry import backoff_delay
from scheduler_service.domain.transitions import RunningTask, after_attempt

S = 1_000_000


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("failures", "expected"), [(1, 1 * S), (2, 2 * S), (3, 4 * S), (9, 10 * S)]
)
def test_backoff_grows_exponentially_up_to_the_maximum(failures: int, expected: int) -> None:
    policy = Backoff(initial=S, multiplier=2.0, maximum=10 * S, jitter=0.0)
    assert backoff_delay(policy, failures) == expected


def test_jitter_only_shortens_and_stays_within_its_fraction() -> None:
    policy = Backoff(initial=10 * S, multiplier=1.0, maximum=10 * S, jitter=0.3)
    rng = random.Random(7)
    delays = [backoff_delay(policy, 1, rng) for _ in range(500)]
    assert min(delays) >= 7 * S and max(delays) <= 10 * S
    assert len(set(delays)) > 100  # actually spread out
    assert backoff_delay(policy, 1, FixedRandom(0.0)) == 10 * S
    assert backoff_delay(policy, 1000) <= 10 * S  # no overflow on huge counts


def running(attempts: int, max_attempts: int = 3) -> RunningTask:
    return RunningTask("t", attempts, max_attempts, Backoff(initial=S, jitter=0.0))


def test_success_finishes_with_result() -> None:
    t = after_attempt(running(1), AttemptEnd("l", AttemptOutcome.SUCCEEDED, '{"a":1}'), 100)
    assert (t.state, t.result_json, t.finished) == (TaskState.SUCCEEDED, '{"a":1}', True)


def test_failure_with_attempts_left_backs_off() -> None:
    t = after_attempt(running(2), AttemptEnd("l", AttemptOutcome.FAILED, error="x"), 100)
    assert t.state == TaskState.PENDING and t.due_at == 100 + 2 * S and not t.finished


def test_last_attempt_or_permanent_error_fails() -> None:
    last = after_attempt(running(3), AttemptEnd("l", AttemptOutcome.TIMED_OUT), 100)
    assert last.state == TaskState.FAILED and last.error == "attempt timed out"
    permanent = after_attempt(
        running(1), AttemptEnd("l", AttemptOutcome.FAILED, error="no", retryable=False), 100
    )
    assert permanent.state == TaskState.FAILED


def test_returned_attempt_does_not_count() -> None:
    t = after_attempt(running(3), AttemptEnd("l", AttemptOutcome.RETURNED), 100)
    assert t.state == TaskState.PENDING and t.attempts == 2 and t.due_at is None  # keeps its place


def test_ids_sort_by_time_and_are_unique() -> None:
    gen = IdGenerator()
    ids = [gen.new_id(1_700_000_000_000) for _ in range(1000)] + [gen.new_id(1_700_000_000_001)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(is_valid_id(i) for i in ids)
    assert not is_valid_id("x") and not is_valid_id("I" * 26)


LIMITS = validation.Limits()


def test_task_spec_applies_defaults() -> None:
    spec = validation.task_spec(
        task_service_pb2.CreateTaskRequest(type="foo"), client="c", now=0, limits=LIMITS
    )
    assert spec.max_attempts == 3 and spec.timeout == 600 * S and spec.backoff == Backoff()
    assert spec.payload_json == "{}" and spec.run_at is None


def test_explicit_zero_jitter_is_kept() -> None:
    request = task_service_pb2.CreateTaskRequest(
        type="foo",
        backoff=task_pb2.BackoffPolicy(jitter=0.0, initial=duration_pb2.Duration(seconds=2)),
    )
    spec = validation.task_spec(request, client="", now=0, limits=LIMITS)
    assert spec.backoff.jitter == 0.0 and spec.backoff.initial == 2 * S


def test_payload_is_canonical_json_with_integers() -> None:
    request = task_service_pb2.CreateTaskRequest(type="foo")
    request.payload.update({"b": 2, "a": [1.5, 3]})
    spec = validation.task_spec(request, client="", now=0, limits=LIMITS)
    assert spec.payload_json == '{"a":[1.5,3],"b":2}'


def test_batch_errors_carry_the_item_prefix() -> None:
    with pytest.raises(InvalidArgument) as raised:
        validation.task_spec(
            task_service_pb2.CreateTaskRequest(type="foo", priority=-1),
            client="",
            now=0,
            limits=LIMITS,
            prefix="tasks[4].",
        )
    assert raised.value.field == "tasks[4].priority"


def test_page_size_follows_aip_158() -> None:
    assert validation.page_size("page_size", 0, 50, 1000) == 50
    assert validation.page_size("page_size", 5000, 50, 1000) == 1000
    with pytest.raises(InvalidArgument):
        validation.page_size("page_size", -1, 50, 1000)


def test_page_tokens_round_trip_and_refuse_tampering() -> None:
    token = page_tokens.encode("01ARZ3NDEKTSV4RRFFQ69G5FAV", "fp1")
    assert page_tokens.decode(token, "fp1") == "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    for bad in ("fp2",):
        with pytest.raises(InvalidArgument):
            page_tokens.decode(token, bad)
    for garbage in ("!!!", "e30", token[:-3]):
        with pytest.raises(InvalidArgument):
            page_tokens.decode(garbage, "fp1")


def test_a_lost_worker_is_retried_at_once_but_counted() -> None:
    lost = after_attempt(running(1), AttemptEnd("l", AttemptOutcome.WORKER_LOST), 100)
    assert lost.state == TaskState.PENDING and lost.due_at is None and lost.attempts == 1
    last = after_attempt(running(3), AttemptEnd("l", AttemptOutcome.WORKER_LOST), 100)
    assert last.state == TaskState.FAILED
