"""The one interface between the scheduling engine and the database.

Every method is a whole semantic step (create these tasks, claim due work for these
sessions, end these attempts) executed atomically; nothing above this interface sees SQL,
a cursor or a transaction. A second backend implements this Protocol and passes the same
contract tests (``tests/integration/store``).

Writes may be grouped with other callers' writes into one transaction (group commit), but
every method returns only after its own effects are durable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..domain.explain import ExplainFacts
from ..domain.model import (
    AttemptEnd,
    AttemptRecord,
    ClaimOutcome,
    ClaimRequest,
    ConcurrencyLimits,
    EndedAttempt,
    LeaseRef,
    Micros,
    ProgressUpdate,
    Stats,
    TaskFilter,
    TaskRecord,
    TaskSpec,
    TaskState,
    TaskTypeRecord,
    WorkerRecord,
)
from ..domain.model import Change as Change
from ..domain.schedules import ScheduleRecord, ScheduleSpec


@dataclass(frozen=True)
class Commit:
    """What a local commit tells the engine."""

    revision: int
    #: A claim ran in this commit, after every other write in it (claims run last), so it
    #: saw all of them: nothing this commit made due is left for the sessions it served.
    claimed: bool


CommitListener = Callable[[Commit], None]


class TaskStore(Protocol):
    # -- lifecycle ---------------------------------------------------------------------
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(commit)`` after each local commit that changed tasks."""

    # -- tasks, for clients ------------------------------------------------------------
    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[tuple[TaskRecord, bool]]:
        """Insert tasks atomically; a spec whose (client, idempotency_key) exists returns
        the existing task instead. Answers ``(task, created)`` in the order of ``specs``."""

    async def get_task(self, task_id: str) -> TaskRecord | None: ...
    async def get_task_with_attempts(
        self, task_id: str
    ) -> tuple[TaskRecord, list[AttemptRecord]] | None:
        """The task and its attempt history as of one moment (one snapshot, not two reads
        that a commit could fall between)."""

    async def get_attempts(self, task_id: str) -> list[AttemptRecord]: ...
    async def get_attempts_of(self, task_ids: Sequence[str]) -> dict[str, list[AttemptRecord]]:
        """The attempt histories of several tasks in one read (a FULL list page)."""

    async def list_tasks(
        self,
        flt: TaskFilter,
        *,
        limit: int,
        after_id: str | None,
        descending: bool,
        full: bool = False,
    ) -> tuple[list[TaskRecord], int]:
        """A page of tasks ordered by id, and the store revision it was read at. Without
        ``full``, payload and result are left out (the BASIC view)."""

    async def list_tasks_with_attempts(
        self, flt: TaskFilter, *, limit: int, after_id: str | None, descending: bool
    ) -> tuple[list[TaskRecord], dict[str, list[AttemptRecord]], int]:
        """The FULL view of :meth:`list_tasks`: the page, each task's attempts, and the
        revision, all from one snapshot (a task never beside an attempt list from another
        moment)."""

    async def delete_task(self, task_id: str) -> tuple[TaskRecord, LeaseRef | None] | None:
        """Remove a task; answers what was removed and the lease to cancel, if running."""

    async def delete_tasks(self, flt: TaskFilter) -> tuple[int, list[LeaseRef]]: ...
    async def prune_finished(self, older_than: Mapping[TaskState, Micros], limit: int) -> int:
        """Retention: remove at most ``limit`` tasks, oldest first, that finished longer ago
        than ``older_than[their state]`` (states not named are kept), as one short write.
        Removed tasks read as deleted to watchers; a task something unfinished still waits
        for (a blocking FAILED task of a group, a task with cached followers) is kept.
        Answers how many went: 0 when none are left. A batch of large tasks may stop short
        of ``limit`` to keep its transaction short, so call again until 0."""

    async def prune_tombstones(self, older_than: Micros, limit: int) -> int:
        """Retention: remove at most ``limit`` records of deleted tasks older than
        ``older_than``; :meth:`history_floor` rises past the newest one removed."""

    async def cancel_task(self, task_id: str) -> tuple[TaskRecord, LeaseRef | None]:
        """Raises NotFound, or FailedPrecondition when the task already finished."""

    async def retry_task(self, task_id: str) -> TaskRecord:
        """Raises NotFound, or FailedPrecondition unless the task is FAILED or CANCELLED."""

    async def run_task(self, task_id: str) -> TaskRecord:
        """Make a task that is not due yet due now; FailedPrecondition once it runs."""

    async def report_progress(self, updates: Sequence[ProgressUpdate]) -> None:
        """Store running tasks' progress; updates for stale leases are ignored."""

    # -- recurring schedules ---------------------------------------------------------------
    async def create_schedule(self, spec: ScheduleSpec) -> ScheduleRecord:
        """Raises AlreadyExists if the id is taken."""

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None: ...
    async def list_schedules(self, *, limit: int, after_id: str | None) -> list[ScheduleRecord]: ...
    async def delete_schedule(self, schedule_id: str) -> None: ...
    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> ScheduleRecord: ...
    async def fire_due_schedules(self) -> list[TaskRecord]:
        """Create the tasks of every due slot, exactly once across processes."""

    async def next_schedule_at(self) -> Micros | None: ...

    # -- leasing, for the engine ---------------------------------------------------------
    async def claim(self, requests: Sequence[ClaimRequest]) -> ClaimOutcome:
        """Lease due tasks to each requesting session (up to its limit), highest claim
        priority first, within paused types, groups and limits; answers the leases per
        request, in order, and when a rate limit that held tasks back frees up."""

    async def end_attempts(self, ends: Sequence[AttemptEnd]) -> list[EndedAttempt]:
        """Apply attempt results; a result whose lease is not current is refused."""

    async def heartbeats(
        self, beats: Sequence[tuple[str, Sequence[str]]], lease_ttl: Micros
    ) -> list[list[str]]:
        """For each beat (a session id and the lease ids it holds): extend the session's
        named leases and mark the worker alive; answers, per beat, the ids that are not
        current (the worker must stop those). Many beats, one write."""

    async def reclaim_expired(self) -> list[EndedAttempt]:
        """Take back leases past their expiry or their attempt's timeout."""

    async def release_session(self, session_id: str, returned: bool = False) -> list[EndedAttempt]:
        """Take back every lease of a session whose stream ended: as lost-worker attempts,
        or, with ``returned``, as RETURNED ones that do not count (a clean drain)."""

    async def next_due_at(self) -> Micros | None:
        """When the earliest queued task that is not yet due becomes due."""

    # -- task types and workers ----------------------------------------------------------
    async def register_task_types(self, names: Sequence[str]) -> None: ...
    async def task_type_names(self) -> set[str]: ...
    async def set_task_type_paused(self, name: str, paused: bool) -> TaskTypeRecord: ...
    async def set_task_type_limits(
        self, name: str, limits: ConcurrencyLimits
    ) -> TaskTypeRecord: ...
    async def list_task_types(self, only: str | None = None) -> list[TaskTypeRecord]: ...
    async def add_worker(self, worker: WorkerRecord) -> None: ...
    async def remove_worker(self, session_id: str) -> None: ...
    async def set_worker_draining(self, session_id: str) -> None: ...
    async def list_workers(self, seen_since: Micros) -> list[WorkerRecord]: ...
    async def stats(self) -> Stats: ...
    async def explain_facts(self, task_id: str, workers_seen_since: Micros) -> ExplainFacts | None:
        """What ExplainTask needs to know about a task, read in one snapshot."""

    # -- change feed, for watchers ---------------------------------------------------------
    async def revision(self) -> int: ...
    async def history_floor(self) -> int:
        """The change feed is complete after this revision only: deletion records up to it
        may have been pruned, so a watcher resuming from before it would miss deletions."""

    async def changes_since(self, cursor: tuple[int, str], limit: int) -> list[Change]:
        """Changes after ``cursor`` = (revision, task id), in (revision, task id) order."""

    async def data_version(self) -> int:
        """A number that changes whenever any connection commits: a cheap "anything new?"."""


def sqlite_path(url: str) -> str:
    """The file behind a ``--database`` value: a plain path or ``sqlite:///path``."""
    if url.startswith(("postgresql://", "postgres://")):
        host = url.split("@")[-1]  # never the password
        raise ValueError(f"--database: {host!r} is a PostgreSQL URL, not an SQLite path")
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///") or ":memory:"
    if "://" in url:
        raise ValueError(
            f"--database: expected a path, sqlite:///path or postgresql://..., got {url!r}"
        )
    if not url:
        raise ValueError("--database: must not be empty")
    return url
