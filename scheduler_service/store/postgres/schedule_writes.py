"""Write handlers for recurring schedules on PostgreSQL: create, pause/resume, delete, and
firing slots (the port of ``sqlite/schedule_writes.py``; same rules, see there).

Each slot fires exactly once across all scheduler replicas, by three guards:

- every write transaction first locks the revision row (``writer.py``), so the firing
  transactions of all replicas run one after another, and each reads (READ COMMITTED) the
  ``next_fire_at`` the previous one committed: a slot already fired is no longer due;
- the due schedules are read ``FOR UPDATE SKIP LOCKED`` and each is advanced only if its
  ``next_fire_at`` is still the one read (a compare-and-set), so even without the
  revision lock a schedule that another transaction is firing is skipped, not fired twice;
  a lost compare-and-set rolls the schedule's tasks back with its savepoint;
- the task a slot makes carries the idempotency key ``schedule:<id>:<wall-clock slot>``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ...domain.errors import AlreadyExists, NotFound
from ...domain.model import Micros, TaskRecord, TaskSpec
from ...domain.schedules import (
    ScheduleRecord,
    ScheduleSpec,
    Slot,
    next_slot,
    plan,
    template_to_json,
)

# The slot's task is the SQLite store's, so that both backends make the same task for a slot.
from ..sqlite.schedule_writes import SCHEDULE_COLUMNS, schedule_from_row
from ..sqlite.schedule_writes import _slot_task as slot_task
from .writer import PgTx

_FIRE_PER_TRANSACTION = 50

#: The task-creation handler (``task_writes``): one list of specs per call, answering
#: ``(task, created)`` per spec.
CreateTasks = Callable[
    [PgTx, Sequence[Sequence[TaskSpec]]], Awaitable[Sequence[Sequence[tuple[TaskRecord, bool]]]]
]


@dataclass
class PgScheduleWrites:
    create_tasks: CreateTasks
    #: Slots missed by at most this long still fire (late).
    grace: Micros

    async def create(self, tx: PgTx, specs: Sequence[ScheduleSpec]) -> list[ScheduleRecord]:
        answers = []
        for spec in specs:
            first = next_slot(spec.cron, spec.time_zone, tx.now)
            inserted = await tx.conn.fetchval(
                f"""INSERT INTO schedules ({SCHEDULE_COLUMNS}, updated_at)
                    VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, '', NULL, '', 0, $9, $9)
                    ON CONFLICT (id) DO NOTHING RETURNING id""",
                spec.id, spec.cron, spec.time_zone, template_to_json(spec.template),
                spec.client, int(spec.catch_up), first.at, first.wall, tx.now,
            )  # fmt: skip
            if inserted is None:
                raise AlreadyExists(f"schedule {spec.id!r} already exists")
            answers.append(await _read(tx, spec.id))
        return answers

    async def set_paused(
        self, tx: PgTx, requests: Sequence[tuple[str, bool]]
    ) -> list[ScheduleRecord]:
        """Pause or resume. Resuming starts from the next slot after now: slots that fell
        in the pause are not caught up (a pause means "do not run")."""
        answers = []
        for schedule_id, paused in requests:
            record = await _read(tx, schedule_id, lock=True)
            if paused:
                await tx.conn.execute(
                    "UPDATE schedules SET paused = 1, updated_at = $2 WHERE id = $1",
                    schedule_id,
                    tx.now,
                )
            elif record.paused:
                upcoming = next_slot(record.cron, record.time_zone, tx.now, record.last_slot)
                await tx.conn.execute(
                    "UPDATE schedules SET paused = 0, next_fire_at = $2, next_slot = $3, "
                    "updated_at = $4 WHERE id = $1",
                    schedule_id,
                    upcoming.at,
                    upcoming.wall,
                    tx.now,
                )
            answers.append(await _read(tx, schedule_id))
        return answers

    async def delete(self, tx: PgTx, schedule_ids: Sequence[str]) -> list[None]:
        for schedule_id in schedule_ids:
            found = await tx.conn.fetchval(
                "DELETE FROM schedules WHERE id = $1 RETURNING id", schedule_id
            )
            if found is None:
                raise NotFound(f"schedule {schedule_id!r} not found")
        return [None] * len(schedule_ids)

    async def fire_due(self, tx: PgTx, calls: Sequence[None]) -> list[list[TaskRecord]]:
        """Fire every due slot of every active schedule; answer the tasks made."""
        rows = await tx.conn.fetch(
            f"""SELECT {SCHEDULE_COLUMNS} FROM schedules
                WHERE paused = 0 AND next_fire_at <= $1 ORDER BY next_fire_at, id LIMIT $2
                FOR UPDATE SKIP LOCKED""",
            tx.now,
            _FIRE_PER_TRANSACTION,
        )
        made: list[TaskRecord] = []
        for schedule in (schedule_from_row(tuple(row)) for row in rows):
            try:
                async with tx.conn.transaction():  # a savepoint: a lost race undoes its tasks
                    made.extend(await self._fire(tx, schedule))
            except _FiredElsewhere:  # pragma: no cover - the revision lock prevents it
                continue
        return [made] + [[] for _ in calls[1:]]

    async def _fire(self, tx: PgTx, schedule: ScheduleRecord) -> list[TaskRecord]:
        first = Slot(schedule.next_fire_at, schedule.next_slot)
        slots, upcoming = plan(
            schedule.cron, schedule.time_zone, first, schedule.last_slot, tx.now,
            self.grace, schedule.catch_up,
        )  # fmt: skip
        specs = [slot_task(schedule, slot) for slot in slots]
        tasks = [task for task, _ in (await self.create_tasks(tx, [specs]))[0]] if specs else []
        advanced = await tx.conn.fetchval(
            """UPDATE schedules SET next_fire_at = $3, next_slot = $4, last_slot = $5,
                   last_fire_at = $6, last_task_id = $7, fired_count = fired_count + $8,
                   updated_at = $9
               WHERE id = $1 AND next_fire_at = $2 RETURNING id""",
            schedule.id, schedule.next_fire_at, upcoming.at, upcoming.wall,
            slots[-1].wall if slots else schedule.last_slot,
            tx.now if slots else schedule.last_fire_at,
            tasks[-1].id if tasks else schedule.last_task_id,
            len(tasks), tx.now,
        )  # fmt: skip
        if advanced is None:  # pragma: no cover - the revision lock prevents it
            raise _FiredElsewhere(schedule.id)
        return tasks


class _FiredElsewhere(Exception):
    """Another transaction advanced the schedule since we read it: it fired the slot."""


async def _read(tx: PgTx, schedule_id: str, *, lock: bool = False) -> ScheduleRecord:
    row = await tx.conn.fetchrow(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        schedule_id,
    )
    if row is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    return schedule_from_row(tuple(row))
