"""Write handlers for what clients do to tasks on PostgreSQL: create, delete, cancel,
retry, run now. A port of the SQLite store's ``task_writes.py``, same rules and answers.

Each handler takes a batch of arguments (see :mod:`.writer`) and runs inside the group
commit transaction ``tx``, which holds the revision row lock: the write transactions of
every replica run one at a time, so an idempotency key or a cache key looked up here
cannot be taken by another replica before this transaction commits (two replicas
creating with one key make one task). Rows changed carry ``tx.revision``.
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
    ProgressUpdate,
    TaskFilter,
    TaskRecord,
    TaskSpec,
    TaskState,
)
from ..sqlite.rows import TASK_COLUMNS, task_from_row
from .cache import CacheHits, cache_key, cache_key_of, find_hits, hand_over
from .filters import Params, filter_sql
from .groups import promote_next
from .writer import PgTx

DELETE_CHUNK = 1000

_TASK_INSERT_COLUMNS = (
    "id", "type", "payload", "state", "priority", "run_at", "due_at", "claim_key",
    "max_attempts", "backoff_initial", "backoff_multiplier", "backoff_maximum",
    "backoff_jitter", "timeout", "grp", "idempotency_key", "cache", "client", "labels",
    "created_at", "updated_at", "revision", "on_failure", "concurrency_key", "cache_key",
    "cached", "cached_from", "result", "finished_at", "trace_context",
)  # fmt: skip

_UPSERT_KEY_LIMITS = """
INSERT INTO concurrency_keys (key, max_running, max_per_second, updated_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE SET max_running = excluded.max_running,
    max_per_second = excluded.max_per_second, updated_at = excluded.updated_at
"""

# The (client, idempotency key) pairs, bound as two arrays.
_KEYS = "(client, idempotency_key) IN (SELECT c, k FROM unnest($1::text[], $2::text[]) AS u(c, k))"

# A cached task in one of these states may have followers.
_LEADING = (TaskState.PENDING, TaskState.RUNNING, TaskState.WAITING)


@dataclass
class PgTaskWrites:
    ids: IdGenerator
    priority_aging: Micros  # microseconds of waiting worth one priority point
    idempotency_retention: Micros

    def claim_key(self, due_at: Micros, priority: int) -> Micros:
        return due_at - priority * self.priority_aging

    async def create(
        self, tx: PgTx, batches: Sequence[Sequence[TaskSpec]]
    ) -> list[list[tuple[TaskRecord, bool]]]:
        """Insert tasks; resolve idempotency keys and the result cache first.

        A spec whose (client, idempotency key) names a task already stored (or made earlier
        in this batch) answers that task. A cached spec answers at once with a copy of an
        identical succeeded task's result, or joins an identical unfinished task (single
        flight), or leads: runs and lets later identical creates join it.
        """
        specs = [spec for batch in batches for spec in batch]
        await self._release_expired_keys(tx, specs)
        existing = await self._tasks_by_key(tx, specs)
        answers: list[tuple[TaskRecord, bool]] = []
        new: list[TaskRecord] = []
        traces: dict[str, str] = {}  # task id -> the create's trace context, when traced
        by_key: dict[tuple[str, str], TaskRecord] = {}
        leaders: dict[str, str] = {}  # cache key -> id of the task made to lead in this batch
        hits = await find_hits(tx, {cache_key(s) for s in specs if s.cache})
        for spec in specs:
            key = (spec.client, spec.idempotency_key)
            if spec.idempotency_key and key in existing:
                answers.append((existing[key], False))
                continue
            if spec.idempotency_key and key in by_key:
                answers.append((by_key[key], False))
                continue
            record = self._new_record(tx, spec, hits, leaders)
            if spec.idempotency_key:
                by_key[key] = record
            new.append(record)
            if spec.trace_context:
                traces[record.id] = spec.trace_context
            answers.append((record, True))
        await self._insert(tx, new, specs, traces)
        promoted = await promote_next(tx, (r.group for r in new), self.priority_aging)
        if promoted:
            answers = [
                (replace(r, state=QUEUED, due_at=promoted[r.id]), is_new)
                if r.id in promoted else (r, is_new)
                for r, is_new in answers
            ]  # fmt: skip
        out: list[list[tuple[TaskRecord, bool]]] = []
        position = 0
        for batch in batches:
            out.append(answers[position : position + len(batch)])
            position += len(batch)
        return out

    def _new_record(
        self, tx: PgTx, spec: TaskSpec, hits: CacheHits, leaders: dict[str, str]
    ) -> TaskRecord:
        now = tx.now
        run_at = spec.run_at if spec.run_at is not None else now
        record = TaskRecord(
            id=self.ids.new_id(now // 1000),
            type=spec.type,
            payload_json=spec.payload_json,
            # A grouped task starts out waiting; promote_next lets the first one go.
            state=TaskState.WAITING if spec.group else QUEUED,
            priority=spec.priority,
            run_at=run_at,
            due_at=max(run_at, now),
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
            revision=tx.revision,
            worker_id="",
            lease_id="",
            on_failure=spec.on_failure,
            concurrency_key=spec.concurrency_key,
        )
        if not spec.cache:
            return record
        key = cache_key(spec)
        if key in leaders:
            return replace(
                record, state=TaskState.FOLLOWING, cached=True, cached_from=leaders[key], due_at=now
            )
        hit = hits.result(key, spec.cache_max_age, now)
        if hit is not None:
            source_id, result = hit
            return replace(
                record, state=TaskState.SUCCEEDED, result_json=result, cached=True,
                cached_from=source_id, due_at=now, finished_at=now,
            )  # fmt: skip
        leader = hits.leaders.get(key)
        if leader is not None:
            return replace(
                record, state=TaskState.FOLLOWING, cached=True, cached_from=leader, due_at=now
            )
        leaders[key] = record.id
        return record

    async def _insert(
        self,
        tx: PgTx,
        records: list[TaskRecord],
        specs: list[TaskSpec],
        traces: dict[str, str],
    ) -> None:
        if not records:
            return
        rows = []
        labels: list[tuple[str, str, str]] = []
        for r in records:
            b = r.backoff
            rows.append(
                (
                    r.id, r.type, r.payload_json, int(r.state), r.priority, r.run_at, r.due_at,
                    self.claim_key(r.due_at, r.priority), r.max_attempts, b.initial,
                    float(b.multiplier), b.maximum, float(b.jitter), r.timeout, r.group,
                    r.idempotency_key, int(r.cache), r.client,
                    json.dumps(dict(r.labels), sort_keys=True), r.created_at, r.updated_at,
                    r.revision, int(r.on_failure), r.concurrency_key, cache_key_of(r),
                    int(r.cached), r.cached_from, r.result_json, r.finished_at,
                    traces.get(r.id, ""),
                )
            )  # fmt: skip
            labels.extend((r.id, k, v) for k, v in r.labels.items())
            tx.counts.add(r.type, int(r.state), r.attempts, r.max_attempts, 1)
        await _insert_rows(tx, "tasks", _TASK_INSERT_COLUMNS, rows)
        if labels:
            await _insert_rows(tx, "task_labels", ("task_id", "key", "value"), labels)
        key_limits = {
            s.concurrency_key: (
                s.concurrency_key,
                s.key_limits.max_running,
                float(s.key_limits.max_per_second),
                tx.now,
            )
            for s in specs
            if s.key_limits is not None
        }
        if key_limits:
            await tx.conn.executemany(_UPSERT_KEY_LIMITS, list(key_limits.values()))

    @staticmethod
    def _keys(specs: list[TaskSpec]) -> tuple[list[str], list[str]]:
        """The distinct (client, idempotency key) pairs of ``specs``, as two arrays."""
        keys = sorted({(s.client, s.idempotency_key) for s in specs if s.idempotency_key})
        return [client for client, _ in keys], [key for _, key in keys]

    async def _release_expired_keys(self, tx: PgTx, specs: list[TaskSpec]) -> None:
        """Idempotency keys are kept for the retention period; an older one is released,
        so a create with it makes a new task."""
        clients, keys = self._keys(specs)
        if keys:
            await tx.conn.execute(
                "UPDATE tasks SET idempotency_key = '' "
                f"WHERE created_at < $3 AND idempotency_key != '' AND {_KEYS}",
                clients, keys, tx.now - self.idempotency_retention,
            )  # fmt: skip

    async def _tasks_by_key(
        self, tx: PgTx, specs: list[TaskSpec]
    ) -> dict[tuple[str, str], TaskRecord]:
        """The stored task of every (client, idempotency key) among ``specs``."""
        clients, keys = self._keys(specs)
        if not keys:
            return {}
        rows = await tx.conn.fetch(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE idempotency_key != '' AND {_KEYS}",
            clients,
            keys,
        )
        found: dict[tuple[str, str], TaskRecord] = {}
        for row in rows:
            task = task_from_row(tuple(row))
            found[(task.client, task.idempotency_key)] = task
        return found

    async def delete(
        self, tx: PgTx, task_ids: Sequence[str]
    ) -> list[tuple[TaskRecord, LeaseRef | None] | None]:
        answers: list[tuple[TaskRecord, LeaseRef | None] | None] = []
        for task_id in task_ids:
            row = await tx.conn.fetchrow(
                f"SELECT {TASK_COLUMNS}, session_id FROM tasks WHERE id = $1", task_id
            )
            if row is None:
                answers.append(None)
                continue
            task = task_from_row(tuple(row))
            await self._remove(tx, [task])
            answers.append((task, _lease_of(task, row["session_id"])))
        return answers

    async def delete_matching(
        self, tx: PgTx, filters: Sequence[TaskFilter]
    ) -> list[tuple[int, list[LeaseRef]]]:
        """Delete up to DELETE_CHUNK matching tasks per filter (callers loop until 0)."""
        answers = []
        for flt in filters:
            params = Params()
            where = filter_sql(flt, tx.now, params)
            rows = await tx.conn.fetch(
                f"SELECT {TASK_COLUMNS}, session_id FROM tasks WHERE {where} "
                f"LIMIT {params.add(DELETE_CHUNK)}",
                *params.values,
            )
            tasks = [task_from_row(tuple(row)) for row in rows]
            await self._remove(tx, tasks)
            leases = [
                lease
                for task, row in zip(tasks, rows, strict=True)
                if (lease := _lease_of(task, row["session_id"])) is not None
            ]
            answers.append((len(tasks), leases))
        return answers

    async def _remove(self, tx: PgTx, tasks: list[TaskRecord]) -> None:
        if not tasks:
            return
        for task in tasks:
            tx.counts.add(task.type, int(task.state), task.attempts, task.max_attempts, -1)
        ids = [t.id for t in tasks]
        await tx.conn.execute("DELETE FROM tasks WHERE id = ANY($1::text[])", ids)
        await tx.conn.execute("DELETE FROM attempts WHERE task_id = ANY($1::text[])", ids)
        await tx.conn.execute("DELETE FROM task_labels WHERE task_id = ANY($1::text[])", ids)
        await tx.conn.executemany(
            "INSERT INTO deleted_tasks (revision, task_id, type, deleted_at, client) "
            "VALUES ($1, $2, $3, $4, $5)",
            [(tx.revision, t.id, t.type, tx.now, t.client) for t in tasks],
        )
        await promote_next(tx, (t.group for t in tasks), self.priority_aging)
        for task in tasks:
            if task.cache and task.state in _LEADING:
                await hand_over(tx, task.id, self.claim_key)

    async def cancel(
        self, tx: PgTx, task_ids: Sequence[str]
    ) -> list[tuple[TaskRecord, LeaseRef | None]]:
        answers = []
        for task_id in task_ids:
            row = await tx.conn.fetchrow(
                f"SELECT {TASK_COLUMNS}, session_id, attempt_seq FROM tasks WHERE id = $1",
                task_id,
            )
            if row is None:
                raise NotFound(f"task {task_id} not found")
            task = task_from_row(tuple(row))
            if task.state.is_terminal:
                raise FailedPrecondition(
                    f"task {task_id} is already {task.state.name} and cannot be cancelled"
                )
            lease = _lease_of(task, row["session_id"])
            if lease is not None:
                await tx.conn.execute(
                    "UPDATE attempts SET finished_at = $1, outcome = $2, error = $3 "
                    "WHERE task_id = $4 AND number = $5",
                    tx.now, int(AttemptOutcome.CANCELLED), "cancelled", task_id,
                    row["attempt_seq"],
                )  # fmt: skip
            updated = await tx.conn.fetchrow(
                f"""UPDATE tasks SET state = $1, finished_at = $2, updated_at = $2,
                        revision = $3, lease_id = '', worker_id = '', session_id = '',
                        lease_expires_at = NULL, attempt_deadline = NULL, error = 'cancelled'
                    WHERE id = $4 RETURNING {TASK_COLUMNS}""",
                int(TaskState.CANCELLED), tx.now, tx.revision, task_id,
            )  # fmt: skip
            assert updated is not None
            cancelled = task_from_row(tuple(updated))
            _changed(tx, task, cancelled)
            await promote_next(tx, [task.group], self.priority_aging)
            if task.cache and task.state != TaskState.FOLLOWING:
                await hand_over(tx, task.id, self.claim_key)
            answers.append((cancelled, lease))
        return answers

    async def run_now(self, tx: PgTx, task_ids: Sequence[str]) -> list[TaskRecord]:
        """Make a task that is not due yet (run_at ahead, or backing off) due now."""
        answers = []
        for task_id in task_ids:
            row = await tx.conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
            if row is None:
                raise NotFound(f"task {task_id} not found")
            task = task_from_row(tuple(row))
            if task.state == TaskState.FOLLOWING:
                raise FailedPrecondition(
                    f"task {task_id} joined task {task.cached_from} (cache) and finishes with it"
                )
            if task.state not in (QUEUED, TaskState.WAITING):
                raise FailedPrecondition(
                    f"task {task_id} is {task.state.name}; only a SCHEDULED or PENDING task "
                    "can be made due"
                )
            if task.due_at <= tx.now:
                answers.append(task)  # already due: nothing to do
                continue
            updated = await tx.conn.fetchrow(
                f"""UPDATE tasks SET due_at = $1, claim_key = $2, updated_at = $1, revision = $3
                    WHERE id = $4 RETURNING {TASK_COLUMNS}""",
                tx.now, self.claim_key(tx.now, task.priority), tx.revision, task_id,
            )  # fmt: skip
            assert updated is not None
            answers.append(task_from_row(tuple(updated)))
        return answers

    async def retry(self, tx: PgTx, task_ids: Sequence[str]) -> list[TaskRecord]:
        answers = []
        for task_id in task_ids:
            row = await tx.conn.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
            if row is None:
                raise NotFound(f"task {task_id} not found")
            old = task_from_row(tuple(row))
            state = old.state
            if state not in (TaskState.FAILED, TaskState.CANCELLED):
                raise FailedPrecondition(
                    f"task {task_id} is {state.name}; only FAILED or CANCELLED tasks can be retried"
                )
            updated = await tx.conn.fetchrow(
                # A retried task runs itself, even if it had copied or joined another.
                f"""UPDATE tasks SET state = $1, due_at = $2, claim_key = $3, attempts = 0,
                        error = '', result = NULL, finished_at = NULL, updated_at = $2,
                        revision = $4, cached = 0, cached_from = ''
                    WHERE id = $5 RETURNING {TASK_COLUMNS}""",
                # A grouped task queues behind its group's active task, if any.
                int(TaskState.WAITING if old.group else QUEUED),
                tx.now,
                self.claim_key(tx.now, old.priority),
                tx.revision,
                task_id,
            )
            assert updated is not None
            revived = task_from_row(tuple(updated))
            _changed(tx, old, revived)
            promoted = await promote_next(tx, [old.group], self.priority_aging)
            if revived.id in promoted:
                revived = replace(revived, state=QUEUED, due_at=promoted[revived.id])
            answers.append(revived)
        return answers


#: Rows inserted by COPY from this many on: 5,000 tasks went in 2.5 times faster than by
#: executemany, but COPY costs a round trip more, a tenth of a millisecond on one task.
COPY_FROM_ROWS = 16


async def _insert_rows(
    tx: PgTx, table: str, columns: tuple[str, ...], rows: Sequence[tuple[object, ...]]
) -> None:
    if len(rows) >= COPY_FROM_ROWS:
        await tx.conn.copy_records_to_table(table, records=rows, columns=columns)
        return
    marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    await tx.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _changed(tx: PgTx, old: TaskRecord, new: TaskRecord) -> None:
    tx.counts.add(old.type, int(old.state), old.attempts, old.max_attempts, -1)
    tx.counts.add(new.type, int(new.state), new.attempts, new.max_attempts, 1)


def _lease_of(task: TaskRecord, session_id: str) -> LeaseRef | None:
    if task.state != TaskState.RUNNING or not task.lease_id:
        return None
    return LeaseRef(task_id=task.id, lease_id=task.lease_id, session_id=session_id)


async def record_progress(tx: PgTx, batches: Sequence[Sequence[ProgressUpdate]]) -> list[None]:
    """Store the latest progress of running tasks; reports for stale leases do nothing."""
    updates = [u for batch in batches for u in batch]
    if updates:
        await tx.conn.executemany(
            """UPDATE tasks
               SET progress_percent = $1, progress_message = $2, progress_details = $3,
                   progress_at = $4, updated_at = $4, revision = $5
               WHERE state = 3 AND lease_id = $6""",
            [
                (u.percent, u.message, u.details_json, tx.now, tx.revision, u.lease_id)
                for u in updates
            ],
        )
    return [None] * len(batches)
