"""What clients can do to tasks, as engine operations (no gRPC here).

Creates go to the store (acknowledged after commit); deleting or cancelling a running
task also tells its worker to stop. The dispatcher and the change feed learn of every
commit through the store's commit listener; a create of work due now also wakes the
dispatcher before it is written, so that the claim joins the create's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..domain.clock import Clock
from ..domain.errors import InvalidArgument, NotFound
from ..domain.explain import Explanation, explain
from ..domain.model import AttemptRecord, TaskFilter, TaskRecord, TaskSpec
from ..store.base import TaskStore
from .dispatcher import Dispatcher
from .metrics import SchedulerMetrics
from .task_types import KnownTaskTypes


@dataclass(frozen=True)
class TaskPage:
    tasks: list[TaskRecord]
    attempts: dict[str, list[AttemptRecord]]
    last_id: str | None
    revision: int


class TaskOperations:
    def __init__(
        self,
        store: TaskStore,
        dispatcher: Dispatcher,
        types: KnownTaskTypes,
        metrics: SchedulerMetrics,
        clock: Clock,
    ) -> None:
        self._clock = clock
        self._store = store
        self._dispatcher = dispatcher
        self._types = types
        self._metrics = metrics

    async def create(self, specs: Sequence[TaskSpec], fields: Sequence[str]) -> list[TaskRecord]:
        """Create tasks atomically; ``fields`` names each spec's type field for errors."""
        await self._types.require(zip(fields, (s.type for s in specs), strict=True))
        now = self._clock.now()
        if any(s.run_at is None or s.run_at <= now for s in specs):
            # A round started now submits its claim beside this create, and claims run last
            # in a transaction: the task can be leased in the commit that creates it.
            self._dispatcher.wake()
        created = await self._store.create_tasks(specs)
        self._metrics.created([task for task, is_new in created if is_new])
        return [task for task, _ in created]

    async def get(self, task_id: str) -> tuple[TaskRecord, list[AttemptRecord]]:
        """The task and its attempt history as of one moment (one read)."""
        found = await self._store.get_task_with_attempts(task_id)
        if found is None:
            raise NotFound(f"task {task_id} not found")
        return found

    async def attempts(self, task_id: str) -> list[AttemptRecord]:
        return await self._store.get_attempts(task_id)

    async def list(
        self,
        flt: TaskFilter,
        *,
        page_size: int,
        after_id: str | None,
        descending: bool,
        full: bool,
    ) -> TaskPage:
        # One more than asked tells whether another page exists.
        attempts: dict[str, list[AttemptRecord]] = {}
        if full:
            tasks, attempts, revision = await self._store.list_tasks_with_attempts(
                flt, limit=page_size + 1, after_id=after_id, descending=descending
            )
        else:
            tasks, revision = await self._store.list_tasks(
                flt, limit=page_size + 1, after_id=after_id, descending=descending
            )
        more = len(tasks) > page_size
        tasks = tasks[:page_size]
        return TaskPage(tasks, attempts, tasks[-1].id if more else None, revision)

    async def delete(self, task_id: str) -> None:
        deleted = await self._store.delete_task(task_id)
        if deleted is None:
            raise NotFound(f"task {task_id} not found")
        _, lease = deleted
        if lease is not None:
            self._dispatcher.cancel_leases([lease], "task deleted")

    async def delete_matching(self, flt: TaskFilter, confirm_all: bool) -> int:
        if flt.is_empty and not confirm_all:
            raise InvalidArgument(
                "confirm_all", "must be true to delete every task (no filter was given)"
            )
        count, leases = await self._store.delete_tasks(flt)
        self._dispatcher.cancel_leases(leases, "task deleted")
        return count

    async def cancel(self, task_id: str) -> TaskRecord:
        task, lease = await self._store.cancel_task(task_id)
        self._metrics.cancelled(task.type)  # the store raises for a task already final
        if lease is not None:
            self._dispatcher.cancel_leases([lease], "task cancelled")
        return task

    async def retry(self, task_id: str) -> TaskRecord:
        return await self._store.retry_task(task_id)

    async def run_now(self, task_id: str) -> TaskRecord:
        return await self._store.run_task(task_id)

    async def explain(self, task_id: str) -> tuple[TaskRecord, Explanation]:
        now = self._clock.now()
        # Workers whose row is fresher than two lease periods are alive (see ListWorkers).
        facts = await self._store.explain_facts(task_id, now - 2 * self._dispatcher.lease_ttl)
        if facts is None:
            raise NotFound(f"task {task_id} not found")
        return facts.task, explain(facts, now)
