"""The task model as the scheduler's rules and store see it.

Times are integers of microseconds since the Unix epoch (UTC) everywhere below the gRPC
layer: exact, cheap to compare and index, and the same in Python and SQL.

The store keeps one "queued" state for tasks waiting to run; whether such a task shows as
SCHEDULED or PENDING depends only on ``due_at`` against the clock, so a task becomes PENDING
the moment it is due without any write (see :meth:`TaskRecord.visible_state`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

Micros = int
MICROS_PER_SECOND = 1_000_000


class TaskState(enum.IntEnum):
    """Visible states; the numbers are those of ``orchestrator.v1.TaskState``."""

    SCHEDULED = 1
    PENDING = 2
    RUNNING = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLED = 6
    #: Stored only: a grouped task waiting for an earlier task of its group. Never shown:
    #: it reads as SCHEDULED or PENDING (see :meth:`TaskRecord.visible_state`).
    WAITING = 7
    #: Stored only: a cached task that joined an identical unfinished task (single flight);
    #: it finishes when that one does. It reads as PENDING.
    FOLLOWING = 8

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})

#: The stored state of every task waiting to run (shown as SCHEDULED or PENDING).
QUEUED = TaskState.PENDING
#: Stored states that read as SCHEDULED or PENDING depending on ``due_at``.
WAITING_STATES = frozenset({QUEUED, TaskState.WAITING, TaskState.FOLLOWING})


class OnFailure(enum.IntEnum):
    """What a group does when one of its tasks ends FAILED (``orchestrator.v1.OnFailure``)."""

    BLOCK = 1
    SKIP = 2


@dataclass(frozen=True, slots=True)
class ConcurrencyLimits:
    """At most ``max_running`` at once and ``max_per_second`` starts; 0 means no limit."""

    max_running: int = 0
    max_per_second: float = 0.0

    @property
    def is_set(self) -> bool:
        return self.max_running > 0 or self.max_per_second > 0

    def rate_window(self) -> tuple[int, Micros]:
        """The sliding window of the rate limit: at most ``count`` starts per ``window``.

        ``max_per_second`` R >= 1 allows floor(R) starts per window of floor(R)/R seconds;
        below 1 it allows one start per 1/R seconds. Either way no window of that length
        ever holds more starts, and the long-run rate never exceeds R.
        """
        rate = self.max_per_second
        count = max(1, int(rate))
        return count, int(count / rate * MICROS_PER_SECOND)


class AttemptOutcome(enum.IntEnum):
    """How an attempt ended; the numbers are those of ``orchestrator.v1.AttemptOutcome``."""

    RUNNING = 0
    SUCCEEDED = 1
    FAILED = 2
    TIMED_OUT = 3
    WORKER_LOST = 4
    CANCELLED = 5
    RETURNED = 6


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts (see :mod:`.retry`)."""

    initial: Micros = 1 * MICROS_PER_SECOND
    multiplier: float = 2.0
    maximum: Micros = 300 * MICROS_PER_SECOND
    jitter: float = 0.2


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A validated request to create one task (the caller's fields, defaults applied)."""

    type: str
    payload_json: str
    run_at: Micros | None
    priority: int
    max_attempts: int
    backoff: Backoff
    timeout: Micros
    group: str
    idempotency_key: str
    cache: bool
    labels: Mapping[str, str]
    client: str
    on_failure: OnFailure = OnFailure.BLOCK
    concurrency_key: str = ""
    key_limits: ConcurrencyLimits | None = None
    #: With ``cache``: reuse only results at most this old (None: any age).
    cache_max_age: Micros | None = None
    #: The create's W3C trace context as JSON (see :mod:`scheduler_service.tracing`); empty
    #: when the scheduler does not trace. Every lease of the task carries it.
    trace_context: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float | None
    message: str
    details_json: str | None
    updated_at: Micros


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One stored task, as read back from the store."""

    id: str
    type: str
    payload_json: str
    state: TaskState
    priority: int
    run_at: Micros
    due_at: Micros
    max_attempts: int
    backoff: Backoff
    timeout: Micros
    group: str
    idempotency_key: str
    cache: bool
    client: str
    labels: Mapping[str, str]
    result_json: str | None
    error: str
    attempts: int
    created_at: Micros
    updated_at: Micros
    started_at: Micros | None
    finished_at: Micros | None
    revision: int
    worker_id: str
    lease_id: str
    on_failure: OnFailure = OnFailure.BLOCK
    concurrency_key: str = ""
    cached: bool = False
    cached_from: str = ""
    progress: Progress | None = None

    def visible_state(self, now: Micros) -> TaskState:
        if self.state in WAITING_STATES:
            return TaskState.SCHEDULED if self.due_at > now else TaskState.PENDING
        return self.state


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    number: int
    worker_id: str
    lease_id: str
    #: When the handler started, as the worker reported it (the lease time until then).
    started_at: Micros
    finished_at: Micros | None
    outcome: AttemptOutcome
    error: str
    due_at: Micros | None = None
    leased_at: Micros | None = None


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Conditions that List, Delete and Watch share; every given one must hold."""

    states: frozenset[TaskState] = frozenset()
    types: frozenset[str] = frozenset()
    client: str = ""
    group: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    task_id: str = ""

    @property
    def is_empty(self) -> bool:
        return not (
            self.states or self.types or self.client or self.group or self.labels or self.task_id
        )

    def matches(self, task: TaskRecord, now: Micros) -> bool:
        """The same test as the store's SQL, for events already in memory (watchers)."""
        if self.task_id and task.id != self.task_id:
            return False
        if self.states and task.visible_state(now) not in self.states:
            return False
        if self.types and task.type not in self.types:
            return False
        if self.client and task.client != self.client:
            return False
        if self.group and task.group != self.group:
            return False
        return all(task.labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True, slots=True)
class Lease:
    """A task handed to a worker: what the worker needs to run it."""

    lease_id: str
    task_id: str
    type: str
    payload_json: str
    attempt: int
    max_attempts: int
    timeout: Micros
    created_at: Micros
    labels: Mapping[str, str]
    #: When this attempt became due (run_at, a backoff's end, its group's turn): the
    #: dispatch latency metric measures from here.
    due_at: Micros = 0
    #: The create's W3C trace context as JSON; empty when it was not traced.
    trace_context: str = ""


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """Where a lease lives: enough to tell its worker to stop."""

    task_id: str
    lease_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """A report that an attempt ended, from a worker or from the scheduler's own reaper."""

    lease_id: str
    outcome: AttemptOutcome
    result_json: str | None = None
    error: str = ""
    retryable: bool = True
    #: When the handler started, as the worker reports it.
    started_at: Micros | None = None


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """What a running handler said about how far it got (fenced by its lease)."""

    lease_id: str
    percent: float | None
    message: str
    details_json: str | None


@dataclass(frozen=True, slots=True)
class EndedAttempt:
    """What the store did with an :class:`AttemptEnd`."""

    lease_id: str
    accepted: bool
    task_id: str = ""
    new_state: TaskState | None = None
    outcome: AttemptOutcome | None = None
    session_id: str = ""
    reason: str = ""
    #: The task's type, for metrics by type (no read of the task needed to label them).
    type: str = ""


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """A worker session asking for up to ``limit`` due tasks of ``types``."""

    session_id: str
    worker_id: str
    types: frozenset[str]
    limit: int
    lease_ttl: Micros


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """Leases per request, and when a rate limit that held tasks back frees up."""

    leases: list[list[Lease]]
    retry_at: Micros | None = None


@dataclass(frozen=True, slots=True)
class TaskTypeRecord:
    name: str
    paused: bool
    first_seen_at: Micros
    counts: Mapping[TaskState, int]
    limits: ConcurrencyLimits = ConcurrencyLimits()


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    session_id: str
    worker_id: str
    scheduler_id: str
    hostname: str
    pid: int
    version: str
    task_types: tuple[str, ...]
    slots: int
    connected_at: Micros
    last_heartbeat_at: Micros
    draining: bool = False
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    totals: Mapping[TaskState, int]
    by_type: Mapping[str, Mapping[TaskState, int]]
    retries: int
    over_retry_limit: int
    most_retried: tuple[tuple[str, str, int, int], ...]
    finished_last_minute: int
    #: Handler start minus due time of the most recent starts, ascending.
    lateness: tuple[Micros, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: a task's state after ``revision``, or its deletion."""

    revision: int
    task_id: str
    task: TaskRecord | None  # None when deleted
    type: str = ""
    client: str = ""
