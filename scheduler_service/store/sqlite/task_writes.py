"""Write handlers for what clients do to tasks: create, delete, cancel, retry.

Each handler takes a batch of arguments (see :mod:`.writer`) and runs inside the group
commit transaction ``tx``; rows changed carry the transaction's revision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ...domain.errors import FailedPrecondition, NotFound
from ...domain.ids import IdGenerator
from ...domain.model import (
    QUEUED,
    AttemptOutcome,
    LeaseRef,
    Micros,
    TaskFilter,
    TaskRecord,
    TaskSpec,
    TaskState,
)
from .counts import Shape
from .filters import filter_sql
from .groups import promote_next
from .rows import TASK_COLUMNS, placeholders, task_from_row
from .writer import Tx

DELETE_CHUNK = 1000

_INSERT_TASK = """
INSERT INTO tasks (
    id, type, payload, state, priority, run_at, due_at, claim_key, max_attempts,
    backoff_initial, backoff_multiplier, backoff_maximum, backoff_jitter, timeout, grp,
    idempotency_key, cache, client, labels, created_at, updated_at, revision, on_failure,
    concurrency_key
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

_UPSERT_KEY_LIMITS = """
INSERT INTO concurrency_keys (key, max_running, max_per_second, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET max_running = excluded.max_running,
    max_per_second = excluded.max_per_second, updated_at = excluded.updated_at
"""


@dataclass
class TaskWrites:
    ids: IdGenerator
    priority_aging: Micros  # microseconds of waiting worth one priority point

    def claim_key(self, due_at: Micros, priority: int) -> Micros:
        return due_at - priority * self.priority_aging

    async def create(
        self, tx: Tx, batches: Sequence[Sequence[TaskSpec]]
    ) -> list[list[tuple[TaskRecord, bool]]]:
        revision = await tx.revision()
        now = tx.now
        made: list[TaskRecord] = []
        rows = []
        key_limits: dict[str, tuple[str, int, float, Micros]] = {}
        for spec in (spec for specs in batches for spec in specs):
            run_at = spec.run_at if spec.run_at is not None else now
            due_at = max(run_at, now)
            # A grouped task starts out waiting; promote_next below lets the first one go.
            state = TaskState.WAITING if spec.group else QUEUED
            record = TaskRecord(
                id=self.ids.new_id(now // 1000),
                type=spec.type,
                payload_json=spec.payload_json,
                state=state,
                priority=spec.priority,
                run_at=run_at,
                due_at=due_at,
                max_attempts=spec.max_attempts,
                backoff=spec.backoff,
                timeout=spec.timeout,
                group=spec.group,
                idempotency_key=spec.idempotency_key,
                cache=spec.cache,
                client=spec.client,
                labels=dict(spec.labels),
                result_json=None,
                error="",
                attempts=0,
                created_at=now,
                updated_at=now,
                started_at=None,
                finished_at=None,
                revision=revision,
                worker_id="",
                lease_id="",
                on_failure=spec.on_failure,
                concurrency_key=spec.concurrency_key,
            )
            made.append(record)
            b = spec.backoff
            rows.append(
                (
                    record.id, spec.type, spec.payload_json, int(state), spec.priority,
                    run_at, due_at, self.claim_key(due_at, spec.priority), spec.max_attempts,
                    b.initial, b.multiplier, b.maximum, b.jitter, spec.timeout, spec.group,
                    spec.idempotency_key, int(spec.cache), spec.client,
                    json.dumps(dict(spec.labels), sort_keys=True), now, now, revision,
                    int(spec.on_failure), spec.concurrency_key,
                )
            )  # fmt: skip
            if spec.key_limits is not None:
                key_limits[spec.concurrency_key] = (
                    spec.concurrency_key, spec.key_limits.max_running,
                    spec.key_limits.max_per_second, now,
                )  # fmt: skip
        await tx.conn.executemany(_INSERT_TASK, rows)
        existing = await self._first_tasks_by_key(tx, made)
        answers: list[tuple[TaskRecord, bool]] = []
        labels: list[tuple[str, str, str]] = []
        for record in made:
            first = existing.get((record.client, record.idempotency_key))
            if first is not None and first.id != record.id:
                answers.append((first, False))
                continue
            answers.append((record, True))
            tx.counts.added(shape_of(record))
            labels.extend((record.id, k, v) for k, v in record.labels.items())
        if labels:
            await tx.conn.executemany(
                "INSERT INTO task_labels (task_id, key, value) VALUES (?, ?, ?)", labels
            )
        if key_limits:
            await tx.conn.executemany(_UPSERT_KEY_LIMITS, list(key_limits.values()))
        promoted = await promote_next(
            tx, (r.group for r, is_new in answers if is_new), self.priority_aging
        )
        if promoted:
            answers = [
                (replace(r, state=QUEUED, due_at=promoted[r.id]), is_new)
                if r.id in promoted else (r, is_new)
                for r, is_new in answers
            ]  # fmt: skip
        out: list[list[tuple[TaskRecord, bool]]] = []
        position = 0
        for specs in batches:
            out.append(answers[position : position + len(specs)])
            position += len(specs)
        return out

    async def _first_tasks_by_key(
        self, tx: Tx, made: list[TaskRecord]
    ) -> dict[tuple[str, str], TaskRecord]:
        """The stored task of every (client, idempotency key) in ``made``."""
        keys = sorted({(r.client, r.idempotency_key) for r in made if r.idempotency_key})
        found: dict[tuple[str, str], TaskRecord] = {}
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            where = " OR ".join(["(client = ? AND idempotency_key = ?)"] * len(chunk))
            params = [part for key in chunk for part in key]
            async with tx.conn.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE idempotency_key != '' AND ({where})",
                params,
            ) as cursor:
                for row in await cursor.fetchall():
                    task = task_from_row(row)
                    found[(task.client, task.idempotency_key)] = task
        return found

    async def delete(
        self, tx: Tx, task_ids: Sequence[str]
    ) -> list[tuple[TaskRecord, LeaseRef | None] | None]:
        answers: list[tuple[TaskRecord, LeaseRef | None] | None] = []
        for task_id in task_ids:
            async with tx.conn.execute(
                f"SELECT {TASK_COLUMNS}, session_id FROM tasks WHERE id = ?", (task_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                answers.append(None)
                continue
            task = task_from_row(row)
            await self._remove(tx, [task])
            lease = _lease_of(task, row[-1])
            answers.append((task, lease))
        return answers

    async def delete_matching(
        self, tx: Tx, filters: Sequence[TaskFilter]
    ) -> list[tuple[int, list[LeaseRef]]]:
        """Delete up to DELETE_CHUNK matching tasks per filter (callers loop until 0)."""
        answers = []
        for flt in filters:
            where, params = filter_sql(flt, tx.now)
            async with tx.conn.execute(
                f"SELECT {TASK_COLUMNS}, session_id FROM tasks WHERE {where} LIMIT ?",
                [*params, DELETE_CHUNK],
            ) as cursor:
                rows = list(await cursor.fetchall())
            tasks = [task_from_row(row) for row in rows]
            await self._remove(tx, tasks)
            leases = [
                lease
                for task, row in zip(tasks, rows, strict=True)
                if (lease := _lease_of(task, row[-1])) is not None
            ]
            answers.append((len(tasks), leases))
        return answers

    async def _remove(self, tx: Tx, tasks: list[TaskRecord]) -> None:
        if not tasks:
            return
        revision = await tx.revision()
        for task in tasks:
            tx.counts.removed(shape_of(task))
        for start in range(0, len(tasks), 500):
            chunk = [t.id for t in tasks[start : start + 500]]
            marks = placeholders(len(chunk))
            await tx.conn.execute(f"DELETE FROM tasks WHERE id IN ({marks})", chunk)
            await tx.conn.execute(f"DELETE FROM attempts WHERE task_id IN ({marks})", chunk)
            await tx.conn.execute(f"DELETE FROM task_labels WHERE task_id IN ({marks})", chunk)
        await tx.conn.executemany(
            "INSERT INTO deleted_tasks (revision, task_id, type, deleted_at) VALUES (?, ?, ?, ?)",
            [(revision, t.id, t.type, tx.now) for t in tasks],
        )
        await promote_next(tx, (t.group for t in tasks), self.priority_aging)

    async def cancel(
        self, tx: Tx, task_ids: Sequence[str]
    ) -> list[tuple[TaskRecord, LeaseRef | None]]:
        answers = []
        for task_id in task_ids:
            async with tx.conn.execute(
                f"SELECT {TASK_COLUMNS}, session_id, attempt_seq FROM tasks WHERE id = ?",
                (task_id,),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise NotFound(f"task {task_id} not found")
            task = task_from_row(row)
            if task.state.is_terminal:
                raise FailedPrecondition(
                    f"task {task_id} is already {task.state.name} and cannot be cancelled"
                )
            lease = _lease_of(task, row[-2])
            if lease is not None:
                await tx.conn.execute(
                    "UPDATE attempts SET finished_at = ?, outcome = ?, error = ? "
                    "WHERE task_id = ? AND number = ?",
                    (tx.now, int(AttemptOutcome.CANCELLED), "cancelled", task_id, row[-1]),
                )
            async with tx.conn.execute(
                f"""UPDATE tasks SET state = ?, finished_at = ?, updated_at = ?, revision = ?,
                        lease_id = '', worker_id = '', session_id = '', lease_expires_at = NULL,
                        attempt_deadline = NULL, error = 'cancelled'
                    WHERE id = ? RETURNING {TASK_COLUMNS}""",
                (int(TaskState.CANCELLED), tx.now, tx.now, await tx.revision(), task_id),
            ) as cursor:
                updated = await cursor.fetchone()
            assert updated is not None
            cancelled = task_from_row(updated)
            tx.counts.changed(shape_of(task), shape_of(cancelled))
            await promote_next(tx, [task.group], self.priority_aging)
            answers.append((cancelled, lease))
        return answers

    async def retry(self, tx: Tx, task_ids: Sequence[str]) -> list[TaskRecord]:
        answers = []
        for task_id in task_ids:
            async with tx.conn.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise NotFound(f"task {task_id} not found")
            old = task_from_row(row)
            state = old.state
            if state not in (TaskState.FAILED, TaskState.CANCELLED):
                raise FailedPrecondition(
                    f"task {task_id} is {state.name}; only FAILED or CANCELLED tasks can be retried"
                )
            async with tx.conn.execute(
                f"""UPDATE tasks SET state = ?, due_at = ?, claim_key = ?, attempts = 0,
                        error = '', result = NULL, finished_at = NULL, updated_at = ?,
                        revision = ?
                    WHERE id = ? RETURNING {TASK_COLUMNS}""",
                (
                    # A grouped task queues behind its group's active task, if any.
                    int(TaskState.WAITING if old.group else QUEUED),
                    tx.now,
                    self.claim_key(tx.now, old.priority),
                    tx.now,
                    await tx.revision(),
                    task_id,
                ),
            ) as cursor:
                updated = await cursor.fetchone()
            assert updated is not None
            revived = task_from_row(updated)
            tx.counts.changed(shape_of(old), shape_of(revived))
            promoted = await promote_next(tx, [old.group], self.priority_aging)
            if revived.id in promoted:
                revived = replace(revived, state=QUEUED, due_at=promoted[revived.id])
            answers.append(revived)
        return answers


def shape_of(task: TaskRecord) -> Shape:
    return Shape(task.type, int(task.state), task.attempts, task.max_attempts)


def _lease_of(task: TaskRecord, session_id: str) -> LeaseRef | None:
    if task.state != TaskState.RUNNING or not task.lease_id:
        return None
    return LeaseRef(task_id=task.id, lease_id=task.lease_id, session_id=session_id)
