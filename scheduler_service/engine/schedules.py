"""Recurring schedules: the operations behind AdminService, and the loop that fires slots.

Every scheduler process runs a :class:`ScheduleRunner`. It sleeps until the earliest next
slot of any active schedule (or at most ``poll_interval``, to see schedules other processes
made), then asks the store to fire what is due; the store does that in the transaction that
advances each schedule, so a slot fires exactly once however many processes try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from ..domain.clock import Clock
from ..domain.errors import NotFound
from ..domain.schedules import ScheduleRecord, ScheduleSpec
from ..store.base import TaskStore
from .metrics import SchedulerMetrics
from .task_types import KnownTaskTypes

log = logging.getLogger(__name__)


class ScheduleOperations:
    """``runner`` is woken after every schedule write: a new or resumed schedule may fire
    sooner than the runner's timer (task writes, by far the most, leave it asleep)."""

    def __init__(self, store: TaskStore, types: KnownTaskTypes, runner: ScheduleRunner) -> None:
        self._store = store
        self._types = types
        self._runner = runner

    async def create(self, spec: ScheduleSpec) -> ScheduleRecord:
        await self._types.require([("schedule.template.type", spec.template.type)])
        if not spec.id:
            spec = ScheduleSpec(
                id=f"sch-{secrets.token_hex(6)}",
                cron=spec.cron,
                time_zone=spec.time_zone,
                template=spec.template,
                catch_up=spec.catch_up,
                client=spec.client,
            )
        record = await self._store.create_schedule(spec)
        self._runner.wake()
        return record

    async def get(self, schedule_id: str) -> ScheduleRecord:
        record = await self._store.get_schedule(schedule_id)
        if record is None:
            raise NotFound(f"schedule {schedule_id!r} not found")
        return record

    async def list(self, *, limit: int, after_id: str | None) -> list[ScheduleRecord]:
        return await self._store.list_schedules(limit=limit, after_id=after_id)

    async def delete(self, schedule_id: str) -> None:
        await self._store.delete_schedule(schedule_id)
        self._runner.wake()

    async def set_paused(self, schedule_id: str, paused: bool) -> ScheduleRecord:
        record = await self._store.set_schedule_paused(schedule_id, paused)
        self._runner.wake()
        return record


class ScheduleRunner:
    def __init__(
        self, store: TaskStore, clock: Clock, metrics: SchedulerMetrics, poll_interval: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                next_at = await self._store.next_schedule_at()
                if next_at is not None and next_at <= self._clock.now():
                    await self._fire()
                    continue
            except Exception:
                log.exception("firing schedules failed; will retry")
                next_at = None
            timeout = self._poll_interval
            if next_at is not None:
                timeout = min(timeout, max(0.0, (next_at - self._clock.now()) / 1e6))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            self._wakeup.clear()

    async def _fire(self) -> None:
        fired = await self._store.fire_due_schedules()
        self._metrics.created(fired)
        for task in fired:
            log.info(
                "schedule fired",
                extra={"task_id": task.id, "schedule": task.labels.get("schedule", "")},
            )
