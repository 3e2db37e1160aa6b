"""What happens to a task when one of its attempts ends: the heart of the retry rules.

Pure functions of the running task, the report and the clock; the store applies the
result inside the same transaction in which it read the task, fenced by the lease id.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import QUEUED, AttemptEnd, AttemptOutcome, Backoff, Micros, TaskState
from .retry import RandomSource, backoff_delay


@dataclass(frozen=True, slots=True)
class RunningTask:
    """The fields of a RUNNING task that decide what its next state is."""

    task_id: str
    attempts: int  # counted attempts including the one that just ended
    max_attempts: int
    backoff: Backoff


@dataclass(frozen=True, slots=True)
class Transition:
    """The task's new state after an attempt ended."""

    state: TaskState
    due_at: Micros | None  # a new due time, or None to keep the task's own
    result_json: str | None
    error: str
    finished: bool
    attempts: int  # counted attempts after this transition


def after_attempt(
    task: RunningTask, end: AttemptEnd, now: Micros, rng: RandomSource | None = None
) -> Transition:
    """Decide the next state of ``task`` given how its current attempt ended.

    - SUCCEEDED finishes the task with its result.
    - RETURNED (a draining worker gave it back) puts it back where it was in the queue (its
      due time unchanged), not counting the attempt.
    - Any failure (handler error, timeout, cancelled by the worker) retries after the backoff
      while attempts remain and the error is retryable; a lost worker retries at once;
      otherwise the task is FAILED, keeping the last error.
    """
    if end.outcome == AttemptOutcome.SUCCEEDED:
        return Transition(
            TaskState.SUCCEEDED, None, end.result_json or "{}", "", True, task.attempts
        )
    if end.outcome == AttemptOutcome.RETURNED:
        # Handed back unfinished: it keeps its due time, so its place in the queue.
        return Transition(QUEUED, None, None, "", False, max(task.attempts - 1, 0))
    error = end.error or _default_error(end.outcome)
    if end.retryable and task.attempts < task.max_attempts:
        # A lost worker is not the task's fault: run it again at once (still counted, so a
        # task that keeps killing workers ends FAILED after max_attempts).
        if end.outcome == AttemptOutcome.WORKER_LOST:
            return Transition(QUEUED, None, None, error, False, task.attempts)
        due = now + backoff_delay(task.backoff, task.attempts, rng)
        return Transition(QUEUED, due, None, error, False, task.attempts)
    return Transition(TaskState.FAILED, None, None, error, True, task.attempts)


def _default_error(outcome: AttemptOutcome) -> str:
    return {
        AttemptOutcome.TIMED_OUT: "attempt timed out",
        AttemptOutcome.WORKER_LOST: "worker lost (stream broken or heartbeats missed)",
        AttemptOutcome.CANCELLED: "cancelled by the worker",
    }.get(outcome, "attempt failed")
