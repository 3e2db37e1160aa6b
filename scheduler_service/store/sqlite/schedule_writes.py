"""Write handlers for recurring schedules: create, pause/resume, delete, and firing slots.

Firing happens inside the write transaction that advances ``next_fire_at``: a slot that
one scheduler process fired is already past when the next process looks, so each slot
fires exactly once across all of them. The task a slot makes also carries the idempotency
key ``schedule:<id>:<wall-clock slot>`` as a second guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ...domain.errors import AlreadyExists, NotFound
from ...domain.model import Micros, TaskRecord, TaskSpec
from ...domain.schedules import (
    CatchUp,
    ScheduleRecord,
    ScheduleSpec,
    Slot,
    next_slot,
    plan,
    template_from_json,
    template_to_json,
)
from .writer import Tx

SCHEDULE_COLUMNS = (
    "id, cron, time_zone, template, client, paused, catch_up, next_fire_at, next_slot, "
    "last_slot, last_fire_at, last_task_id, fired_count, created_at"
)
_FIRE_PER_TRANSACTION = 50

CreateTasks = Callable[[Tx, Sequence[Sequence[TaskSpec]]], Any]


def schedule_from_row(row: Sequence[Any]) -> ScheduleRecord:
    return ScheduleRecord(
        id=row[0],
        cron=row[1],
        time_zone=row[2],
        template=template_from_json(row[3]),
        client=row[4],
        paused=bool(row[5]),
        catch_up=CatchUp(row[6]),
        next_fire_at=row[7],
        next_slot=row[8],
        last_slot=row[9],
        last_fire_at=row[10],
        last_task_id=row[11],
        fired_count=row[12],
        created_at=row[13],
    )


@dataclass
class ScheduleWrites:
    create_tasks: CreateTasks
    grace: Micros

    async def create(self, tx: Tx, specs: Sequence[ScheduleSpec]) -> list[ScheduleRecord]:
        answers = []
        for spec in specs:
            async with tx.conn.execute("SELECT 1 FROM schedules WHERE id = ?", (spec.id,)) as c:
                if await c.fetchone() is not None:
                    raise AlreadyExists(f"schedule {spec.id!r} already exists")
            first = next_slot(spec.cron, spec.time_zone, tx.now)
            await tx.conn.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, '', NULL, '', 0, ?, ?)",
                (
                    spec.id, spec.cron, spec.time_zone, template_to_json(spec.template),
                    spec.client, int(spec.catch_up), first.at, first.wall, tx.now, tx.now,
                ),
            )  # fmt: skip
            answers.append(await _read(tx, spec.id))
        return answers

    async def set_paused(
        self, tx: Tx, requests: Sequence[tuple[str, bool]]
    ) -> list[ScheduleRecord]:
        """Pause or resume. Resuming starts from the next slot after now: slots that fell
        in the pause are not caught up (a pause means "do not run")."""
        answers = []
        for schedule_id, paused in requests:
            record = await _read(tx, schedule_id)
            if paused:
                await tx.conn.execute(
                    "UPDATE schedules SET paused = 1, updated_at = ? WHERE id = ?",
                    (tx.now, schedule_id),
                )
            elif record.paused:
                upcoming = next_slot(record.cron, record.time_zone, tx.now, record.last_slot)
                await tx.conn.execute(
                    "UPDATE schedules SET paused = 0, next_fire_at = ?, next_slot = ?, "
                    "updated_at = ? WHERE id = ?",
                    (upcoming.at, upcoming.wall, tx.now, schedule_id),
                )
            answers.append(await _read(tx, schedule_id))
        return answers

    async def delete(self, tx: Tx, schedule_ids: Sequence[str]) -> list[None]:
        for schedule_id in schedule_ids:
            async with tx.conn.execute(
                "DELETE FROM schedules WHERE id = ? RETURNING id", (schedule_id,)
            ) as cursor:
                if await cursor.fetchone() is None:
                    raise NotFound(f"schedule {schedule_id!r} not found")
        return [None] * len(schedule_ids)

    async def fire_due(self, tx: Tx, calls: Sequence[None]) -> list[list[TaskRecord]]:
        """Fire every due slot of every active schedule; answer the tasks made."""
        async with tx.conn.execute(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules INDEXED BY schedules_due "
            "WHERE paused = 0 AND next_fire_at <= ? ORDER BY next_fire_at LIMIT ?",
            (tx.now, _FIRE_PER_TRANSACTION),
        ) as cursor:
            due = [schedule_from_row(row) for row in await cursor.fetchall()]
        made: list[TaskRecord] = []
        for schedule in due:
            first = Slot(schedule.next_fire_at, schedule.next_slot)
            slots, upcoming = plan(
                schedule.cron, schedule.time_zone, first, schedule.last_slot, tx.now,
                self.grace, schedule.catch_up,
            )  # fmt: skip
            specs = [_slot_task(schedule, slot) for slot in slots]
            tasks = [task for task, _ in (await self.create_tasks(tx, [specs]))[0]] if specs else []
            made.extend(tasks)
            await tx.conn.execute(
                """UPDATE schedules SET next_fire_at = ?, next_slot = ?,
                       last_slot = CASE WHEN ? = '' THEN last_slot ELSE ? END,
                       last_fire_at = coalesce(?, last_fire_at),
                       last_task_id = CASE WHEN ? = '' THEN last_task_id ELSE ? END,
                       fired_count = fired_count + ?, updated_at = ?
                   WHERE id = ?""",
                (
                    upcoming.at, upcoming.wall,
                    slots[-1].wall if slots else "", slots[-1].wall if slots else "",
                    tx.now if slots else None,
                    tasks[-1].id if tasks else "", tasks[-1].id if tasks else "",
                    len(tasks), tx.now, schedule.id,
                ),
            )  # fmt: skip
        return [made] + [[] for _ in calls[1:]]


def _slot_task(schedule: ScheduleRecord, slot: Slot) -> TaskSpec:
    template = schedule.template
    return replace(
        template,
        run_at=slot.at,
        idempotency_key=f"schedule:{schedule.id}:{slot.wall}",
        client=schedule.client,
        labels={**template.labels, "schedule": schedule.id},
    )


async def _read(tx: Tx, schedule_id: str) -> ScheduleRecord:
    async with tx.conn.execute(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"schedule {schedule_id!r} not found")
    return schedule_from_row(row)
