"""What operators can see and do, as engine operations (no gRPC, no HTTP here).

Both the gRPC ``AdminService`` and the web dashboard go through this class, so a pause
from the dashboard and one from ``taskctl`` are the same operation, and "a live worker"
means the same thing on both.
"""

from __future__ import annotations

from ..domain.clock import Clock
from ..domain.model import Stats, TaskTypeRecord, WorkerRecord
from ..store.base import TaskStore
from .dispatcher import Dispatcher


class AdminOperations:
    def __init__(self, store: TaskStore, dispatcher: Dispatcher, clock: Clock) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock

    async def live_workers(self) -> list[WorkerRecord]:
        """Workers connected to any scheduler process sharing the database.

        A row not refreshed for two lease periods belongs to a crashed scheduler process.
        """
        return await self._store.list_workers(self._clock.now() - 2 * self._dispatcher.lease_ttl)

    async def workers_by_type(self, workers: list[WorkerRecord] | None = None) -> dict[str, int]:
        """Live workers per task type; of ``workers`` when the caller has read them."""
        counts: dict[str, int] = {}
        for worker in await self.live_workers() if workers is None else workers:
            for name in worker.task_types:
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def task_types(self) -> list[TaskTypeRecord]:
        return await self._store.list_task_types()

    async def set_paused(self, name: str, paused: bool) -> TaskTypeRecord:
        """Pause or resume a task type; a resume lets its waiting tasks go at once."""
        record = await self._store.set_task_type_paused(name, paused)
        if not paused:
            self._dispatcher.wake()
        return record

    async def stats(self) -> Stats:
        return await self._store.stats()
