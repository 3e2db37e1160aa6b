"""Why a task is not running now, in plain words: a pure function of facts and the clock.

The store gathers the facts in one read (:class:`ExplainFacts`); :func:`explain` turns
them into reasons, most important first. Keeping the wording here, away from SQL and
gRPC, lets the unit tests pin every sentence.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from .model import (
    MICROS_PER_SECOND,
    AttemptRecord,
    ConcurrencyLimits,
    Micros,
    TaskRecord,
    TaskState,
)


class ReasonCode(enum.IntEnum):
    """The numbers of ``orchestrator.v1.ReasonCode``."""

    RUNNING = 1
    FINISHED = 2
    NOT_DUE = 3
    BACKING_OFF = 4
    GROUP_BLOCKED = 5
    TYPE_PAUSED = 6
    CONCURRENCY_LIMIT = 7
    RATE_LIMIT = 8
    NO_WORKER = 9
    WORKERS_BUSY = 10
    QUEUED = 11
    JOINED = 12


@dataclass(frozen=True)
class LimitFacts:
    """A type's or a key's limits and how much of them is in use."""

    limits: ConcurrencyLimits
    running: int
    window_starts: int
    window_frees_at: Micros | None


@dataclass(frozen=True)
class ExplainFacts:
    task: TaskRecord
    last_attempt: AttemptRecord | None
    type_paused: bool
    type_limits: LimitFacts | None
    key_limits: LimitFacts | None
    #: The group's active task (id, stored state) when the task waits for its group.
    group_active: tuple[str, TaskState] | None
    #: Waiting tasks of the group ahead of this one.
    group_waiting_ahead: int
    #: Live workers serving the type, and their free slots in total.
    workers: int
    free_slots: int
    tasks_ahead: int
    #: The state of the task a cached task joined (when it follows one).
    leader_state: TaskState | None = None


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str
    blocking_task_id: str = ""
    until: Micros | None = None


@dataclass(frozen=True)
class Explanation:
    summary: str
    reasons: list[Reason] = field(default_factory=list)
    tasks_ahead: int = 0


def _at(micros: Micros) -> str:
    return (
        dt.datetime.fromtimestamp(micros / MICROS_PER_SECOND, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S.%f"
        )[:-3]
        + " UTC"
    )


def _in(micros: Micros) -> str:
    seconds = micros / MICROS_PER_SECOND
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def explain(facts: ExplainFacts, now: Micros) -> Explanation:
    task = facts.task
    state = task.visible_state(now)
    if state.is_terminal:
        when = f" at {_at(task.finished_at)}" if task.finished_at else ""
        detail = f": {task.error}" if task.error and state != TaskState.SUCCEEDED else ""
        message = f"it finished {state.name}{when}{detail}"
        return Explanation(f"Task {task.id} is not running: {message}.", [
            Reason(ReasonCode.FINISHED, message)
        ])  # fmt: skip
    if state == TaskState.RUNNING:
        message = (
            f"it is running on worker {task.worker_id} (attempt {task.attempts} of "
            f"{task.max_attempts}, lease {task.lease_id})"
        )
        return Explanation(f"Task {task.id} is running.", [Reason(ReasonCode.RUNNING, message)])

    reasons: list[Reason] = []
    if task.due_at > now:
        failed = facts.last_attempt is not None and task.attempts > 0 and task.error
        if failed:
            reasons.append(
                Reason(
                    ReasonCode.BACKING_OFF,
                    f"attempt {task.attempts} of {task.max_attempts} failed ({task.error}); "
                    f"it retries after a backoff, in {_in(task.due_at - now)} "
                    f"({_at(task.due_at)})",
                    until=task.due_at,
                )
            )
        else:
            reasons.append(
                Reason(
                    ReasonCode.NOT_DUE,
                    f"it is not due yet: run_at is {_at(task.due_at)}, in {_in(task.due_at - now)}",
                    until=task.due_at,
                )
            )
    if task.state == TaskState.FOLLOWING:
        leader = facts.leader_state.name if facts.leader_state else "gone"
        message = (
            f"it joined task {task.cached_from}, identical (same type and payload, cache on), "
            f"which is {leader}; it finishes the same way when that one does"
        )
        reason = Reason(ReasonCode.JOINED, message, blocking_task_id=task.cached_from)
        return Explanation(f"Task {task.id} is {state.name} because {message}.", [reason])
    if task.state == TaskState.WAITING:
        if facts.group_active is not None:
            active_id, active_state = facts.group_active
            what = {
                TaskState.RUNNING: "is running",
                TaskState.FAILED: "FAILED and blocks the group until it is retried or deleted",
            }.get(active_state, "has not run yet")
            message = (
                f'group "{task.group}" runs one task at a time, in order; '
                f"it waits for task {active_id}, which {what}"
            )
            if facts.group_waiting_ahead:
                message += f", and {facts.group_waiting_ahead} more before it"
            reasons.append(Reason(ReasonCode.GROUP_BLOCKED, message, blocking_task_id=active_id))
        else:
            reasons.append(
                Reason(ReasonCode.GROUP_BLOCKED, f'it waits for its turn in group "{task.group}"')
            )
    if facts.type_paused:
        reasons.append(
            Reason(
                ReasonCode.TYPE_PAUSED,
                f'task type "{task.type}" is paused; ResumeTaskType (taskctl resume '
                f"{task.type}) lets it run",
            )
        )
    reasons.extend(_limit_reasons(f'task type "{task.type}"', facts.type_limits, now))
    if task.concurrency_key:
        reasons.extend(
            _limit_reasons(f'concurrency key "{task.concurrency_key}"', facts.key_limits, now)
        )
    if facts.workers == 0:
        reasons.append(
            Reason(
                ReasonCode.NO_WORKER,
                f'no connected worker serves task type "{task.type}"; start one that does',
            )
        )
    elif facts.free_slots <= 0:
        reasons.append(
            Reason(
                ReasonCode.WORKERS_BUSY,
                f'all {facts.workers} worker(s) serving "{task.type}" are busy (no free slot)',
            )
        )
    if not reasons:
        ahead = facts.tasks_ahead
        message = (
            f"it is due and eligible; {ahead} task(s) of its type come first in priority order"
            if ahead
            else "it is due and next in line; a worker should lease it momentarily"
        )
        reasons.append(Reason(ReasonCode.QUEUED, message))
    summary = f"Task {task.id} is {state.name} because {reasons[0].message}."
    return Explanation(summary, reasons, facts.tasks_ahead)


def _limit_reasons(what: str, facts: LimitFacts | None, now: Micros) -> list[Reason]:
    if facts is None:
        return []
    reasons = []
    limits = facts.limits
    if limits.max_running > 0 and facts.running >= limits.max_running:
        reasons.append(
            Reason(
                ReasonCode.CONCURRENCY_LIMIT,
                f"{what} runs at most {limits.max_running} at once and {facts.running} are running",
            )
        )
    if limits.max_per_second > 0:
        count, window = limits.rate_window()
        if facts.window_starts >= count:
            frees = facts.window_frees_at
            reasons.append(
                Reason(
                    ReasonCode.RATE_LIMIT,
                    f"{what} starts at most {limits.max_per_second:g} per second and its "
                    f"last {count} start(s) were within {_in(window)}"
                    + (f"; the next may start in {_in(max(0, frees - now))}" if frees else ""),
                    until=frees,
                )
            )
    return reasons
