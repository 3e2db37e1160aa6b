"""SqliteTaskStore: the :class:`~scheduler_service.store.base.TaskStore` on one SQLite file.

Two connections: the writer, owned by the group-commit task (:mod:`.writer`), and a
reader for queries. WAL lets the reader see every committed write without waiting for the
writer, and lets several scheduler processes share the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from ...domain.clock import Clock, SystemClock
from ...domain.errors import NotFound
from ...domain.explain import ExplainFacts
from ...domain.ids import IdGenerator
from ...domain.model import (
    MICROS_PER_SECOND,
    WAITING_STATES,
    AttemptEnd,
    AttemptRecord,
    Change,
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
from ...domain.schedules import ScheduleRecord, ScheduleSpec
from ...domain.transitions import after_attempt
from ..base import Commit, CommitListener
from .boot import adopt_boot, current_boot_id
from .connection import connect, connect_writer, migrate
from .errors import DatabaseUnusable
from .explain_facts import read_explain_facts
from .filters import filter_sql
from .inline import InlineConnection
from .lease_writes import Decide, LeaseWrites
from .retention import prune_finished, prune_tombstones
from .rows import (
    ATTEMPT_COLUMNS,
    TASK_COLUMNS,
    TASK_COLUMNS_BASIC,
    WORKER_COLUMNS,
    attempt_from_row,
    placeholders,
    task_from_row,
    worker_from_row,
)
from .schedule_writes import SCHEDULE_COLUMNS, ScheduleWrites, schedule_from_row
from .task_writes import TaskWrites
from .write_lock import WriteLock
from .writer import GroupCommitWriter, Tx, WriteKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SqliteOptions:
    synchronous: str = "FULL"
    #: Waiting this long raises a task's effective priority by one point.
    priority_aging: Micros = 1 * MICROS_PER_SECOND
    clock: Clock = field(default_factory=SystemClock)
    decide: Decide = after_attempt
    #: How long an idempotency key keeps returning its first task.
    idempotency_retention: Micros = 24 * 3600 * MICROS_PER_SECOND
    #: Schedule slots missed by at most this long still fire (late).
    schedule_grace: Micros = 60 * MICROS_PER_SECOND
    #: The host's boot id (None: read it); tests set it to act out a reboot.
    boot_id: str | None = None
    #: Test hook: "<kind>:before-commit" or "<kind>:after-commit" exits the process there.
    crash_at: str | None = None


class SqliteTaskStore:
    def __init__(self, path: str, options: SqliteOptions | None = None) -> None:
        self.path = path
        self.options = options or SqliteOptions()
        self._clock = self.options.clock
        self._listeners: list[CommitListener] = []
        self._lock = WriteLock(path)
        self._writer_conn: InlineConnection | None = None
        self._reader: aiosqlite.Connection | None = None
        # Reads that must see one snapshot over several statements run in a transaction on
        # a connection of their own, one at a time: a BEGIN on the shared reader would
        # collide with a concurrent one, and would hold every other read on it to an old
        # snapshot (a client could miss the task it had just created).
        self._snapshot_reader: aiosqlite.Connection | None = None
        self._snapshot_lock = asyncio.Lock()
        self._writer: GroupCommitWriter | None = None
        tasks = TaskWrites(
            IdGenerator(), self.options.priority_aging, self.options.idempotency_retention
        )
        leases = LeaseWrites(self.options.decide, self.options.priority_aging)
        schedules = ScheduleWrites(tasks.create, self.options.schedule_grace)
        self._run_now = WriteKind("run_now", tasks.run_now)
        self._progress = WriteKind("progress", leases.progress)
        self._create_schedule = WriteKind("create_schedule", schedules.create)
        self._pause_schedule = WriteKind("pause_schedule", schedules.set_paused)
        self._delete_schedule = WriteKind("delete_schedule", schedules.delete)
        self._fire_schedules = WriteKind("fire_schedules", schedules.fire_due)
        self._create = WriteKind("create", tasks.create)
        self._delete = WriteKind("delete", tasks.delete)
        self._delete_matching = WriteKind("delete_matching", tasks.delete_matching)
        self._cancel = WriteKind("cancel", tasks.cancel)
        self._retry = WriteKind("retry", tasks.retry)
        self._claim = WriteKind("claim", leases.claim, last=True)
        self._end = WriteKind("end", leases.end)
        self._heartbeat = WriteKind("heartbeat", leases.heartbeat)
        self._reclaim = WriteKind("reclaim", leases.reclaim_expired)
        self._release = WriteKind("release", leases.release_sessions)
        self._register_types = WriteKind("register_types", _register_types)
        self._pause = WriteKind("pause", _set_paused)
        self._set_limits = WriteKind("set_limits", _set_limits)
        self._add_worker = WriteKind("add_worker", _add_worker)
        self._remove_worker = WriteKind("remove_worker", _remove_worker)
        self._worker_draining = WriteKind("worker_draining", _worker_draining)
        self._prune = WriteKind("prune", prune_finished)
        self._prune_tombstones = WriteKind("prune_tombstones", prune_tombstones)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._open()
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise DatabaseUnusable(
                f"cannot use the database {self.path!r} for writing: {exc} "
                "(is the file, or its folder, read-only?)"
            ) from exc

    async def _open(self) -> None:
        starting = await connect(self.path, self.options.synchronous)
        try:
            await migrate(starting)
            expired = await adopt_boot(starting, self.options.boot_id or current_boot_id())
        finally:
            await starting.close()
        if expired:
            log.warning("leases of a previous boot expired", extra={"leases": expired})
        self._writer_conn = await connect_writer(self.path, self.options.synchronous)
        self._reader = await connect(self.path, self.options.synchronous)
        self._snapshot_reader = await connect(self.path, self.options.synchronous)
        self._lock.open()
        self._writer = GroupCommitWriter(
            self._writer_conn,
            self._clock,
            self._notify,
            self._lock,
            crash_at=self.options.crash_at,
        )
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        for conn in (self._reader, self._snapshot_reader, self._writer_conn):
            if conn is not None:
                await conn.close()
        self._lock.close()
        self._reader = self._snapshot_reader = self._writer_conn = None

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def _notify(self, revision: int, last_kinds: bool) -> None:
        commit = Commit(revision, claimed=last_kinds)  # claims are the only ``last`` kind
        for listener in self._listeners:
            listener(commit)

    @property
    def _w(self) -> GroupCommitWriter:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await _fetchall(self._r, sql, params)

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction: every statement on the connection sees one snapshot."""
        if self._snapshot_reader is None:
            raise RuntimeError("store is not open")
        conn = self._snapshot_reader
        async with self._snapshot_lock:
            await conn.execute("BEGIN")
            try:
                yield conn
            finally:
                await conn.execute("COMMIT")

    # -- tasks -----------------------------------------------------------------------------

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[tuple[TaskRecord, bool]]:
        return await self._w.submit(self._create, specs)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        rows = await self._fetchall(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return task_from_row(rows[0]) if rows else None

    async def get_task_with_attempts(
        self, task_id: str
    ) -> tuple[TaskRecord, list[AttemptRecord]] | None:
        # One statement is one snapshot: a task read and its attempts read apart could
        # straddle a commit (a reclaimed attempt beside the old lease).
        rows = await self._fetchall(
            f"SELECT {_qualified('t', TASK_COLUMNS)}, {_qualified('a', ATTEMPT_COLUMNS)} "
            "FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id "
            "WHERE t.id = ? ORDER BY a.number",
            (task_id,),
        )
        if not rows:
            return None
        width = len(TASK_COLUMNS.split(","))
        attempts = [attempt_from_row(row[width:]) for row in rows if row[width] is not None]
        return task_from_row(rows[0][:width]), attempts

    async def get_attempts(self, task_id: str) -> list[AttemptRecord]:
        rows = await self._fetchall(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = ? ORDER BY number",
            (task_id,),
        )
        return [attempt_from_row(row) for row in rows]

    async def get_attempts_of(self, task_ids: Sequence[str]) -> dict[str, list[AttemptRecord]]:
        return await _attempts_of(self._r, task_ids)

    async def list_tasks(
        self,
        flt: TaskFilter,
        *,
        limit: int,
        after_id: str | None,
        descending: bool,
        full: bool = False,
    ) -> tuple[list[TaskRecord], int]:
        # One read transaction: the page and the revision come from the same snapshot.
        async with self._snapshot() as conn:
            return await self._list_page(conn, flt, limit, after_id, descending, full)

    async def list_tasks_with_attempts(
        self, flt: TaskFilter, *, limit: int, after_id: str | None, descending: bool
    ) -> tuple[list[TaskRecord], dict[str, list[AttemptRecord]], int]:
        async with self._snapshot() as conn:
            tasks, revision = await self._list_page(conn, flt, limit, after_id, descending, True)
            attempts = await _attempts_of(conn, [task.id for task in tasks])
        return tasks, attempts, revision

    async def _list_page(
        self,
        conn: aiosqlite.Connection,
        flt: TaskFilter,
        limit: int,
        after_id: str | None,
        descending: bool,
        full: bool,
    ) -> tuple[list[TaskRecord], int]:
        where, params = filter_sql(flt, self._clock.now())
        if after_id is not None:
            where += " AND id < ?" if descending else " AND id > ?"
            params.append(after_id)
        columns = TASK_COLUMNS if full else TASK_COLUMNS_BASIC
        order = "DESC" if descending else "ASC"
        revision = await _fetchall(conn, "SELECT value FROM meta WHERE key = 'revision'")
        rows = await _fetchall(
            conn,
            f"SELECT {columns} FROM tasks WHERE {where} ORDER BY id {order} LIMIT ?",
            [*params, limit],
        )
        return [task_from_row(row) for row in rows], int(revision[0][0])

    async def delete_task(self, task_id: str) -> tuple[TaskRecord, LeaseRef | None] | None:
        return await self._w.submit(self._delete, task_id)

    async def delete_tasks(self, flt: TaskFilter) -> tuple[int, list[LeaseRef]]:
        """Delete in chunks, each its own transaction, so other writers keep flowing."""
        total, leases = 0, []
        while True:
            count, chunk_leases = await self._w.submit(self._delete_matching, flt)
            total += count
            leases.extend(chunk_leases)
            if count == 0:
                return total, leases

    async def prune_finished(self, older_than: Mapping[TaskState, Micros], limit: int) -> int:
        if not older_than or limit <= 0:
            return 0
        return await self._w.submit(self._prune, (dict(older_than), limit))

    async def prune_tombstones(self, older_than: Micros, limit: int) -> int:
        if limit <= 0:
            return 0
        return await self._w.submit(self._prune_tombstones, (older_than, limit))

    async def cancel_task(self, task_id: str) -> tuple[TaskRecord, LeaseRef | None]:
        return await self._w.submit(self._cancel, task_id)

    async def retry_task(self, task_id: str) -> TaskRecord:
        return await self._w.submit(self._retry, task_id)

    async def run_task(self, task_id: str) -> TaskRecord:
        return await self._w.submit(self._run_now, task_id)

    async def report_progress(self, updates: Sequence[ProgressUpdate]) -> None:
        if updates:
            await self._w.submit(self._progress, updates)

    # -- schedules ---------------------------------------------------------------------------

    async def create_schedule(self, spec: ScheduleSpec) -> ScheduleRecord:
        return await self._w.submit(self._create_schedule, spec)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        rows = await self._fetchall(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", (schedule_id,)
        )
        return schedule_from_row(rows[0]) if rows else None

    async def list_schedules(self, *, limit: int, after_id: str | None) -> list[ScheduleRecord]:
        rows = await self._fetchall(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id > ? ORDER BY id LIMIT ?",
            (after_id or "", limit),
        )
        return [schedule_from_row(row) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._w.submit(self._delete_schedule, schedule_id)

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> ScheduleRecord:
        return await self._w.submit(self._pause_schedule, (schedule_id, paused))

    async def fire_due_schedules(self) -> list[TaskRecord]:
        return await self._w.submit(self._fire_schedules, None)

    async def next_schedule_at(self) -> Micros | None:
        rows = await self._fetchall(
            "SELECT min(next_fire_at) FROM schedules INDEXED BY schedules_due WHERE paused = 0"
        )
        return rows[0][0] if rows and rows[0][0] is not None else None

    # -- leasing ---------------------------------------------------------------------------

    async def claim(self, requests: Sequence[ClaimRequest]) -> ClaimOutcome:
        # One write for the whole round: every session's claim lands in one transaction,
        # for the cost of one queued write however many sessions ask.
        return await self._w.submit(self._claim, list(requests))

    async def end_attempts(self, ends: Sequence[AttemptEnd]) -> list[EndedAttempt]:
        if not ends:
            return []
        return await self._w.submit(self._end, ends)

    async def heartbeats(
        self, beats: Sequence[tuple[str, Sequence[str]]], lease_ttl: Micros
    ) -> list[list[str]]:
        return await self._w.submit(self._heartbeat, (beats, lease_ttl))

    async def reclaim_expired(self) -> list[EndedAttempt]:
        return await self._w.submit(self._reclaim, None)

    async def release_session(self, session_id: str, returned: bool = False) -> list[EndedAttempt]:
        return await self._w.submit(self._release, (session_id, returned))

    async def next_due_at(self) -> Micros | None:
        rows = await self._fetchall(
            # "state IN (2, 7)" restates the partial index's condition so SQLite may use it.
            "SELECT min(due_at) FROM tasks INDEXED BY tasks_due "
            "WHERE state IN (2, 7) AND state = 2 AND due_at > ?",
            (self._clock.now(),),
        )
        return rows[0][0] if rows and rows[0][0] is not None else None

    # -- task types and workers --------------------------------------------------------------

    async def register_task_types(self, names: Sequence[str]) -> None:
        if names:
            await self._w.submit(self._register_types, tuple(names))

    async def task_type_names(self) -> set[str]:
        return {row[0] for row in await self._fetchall("SELECT name FROM task_types")}

    async def set_task_type_paused(self, name: str, paused: bool) -> TaskTypeRecord:
        await self._w.submit(self._pause, (name, paused))
        return await self._task_type(name)

    async def set_task_type_limits(self, name: str, limits: ConcurrencyLimits) -> TaskTypeRecord:
        await self._w.submit(self._set_limits, (name, limits))
        return await self._task_type(name)

    async def _task_type(self, name: str) -> TaskTypeRecord:
        for record in await self.list_task_types(name):
            return record
        raise NotFound(f"task type {name!r} not found")  # pragma: no cover - deleted meanwhile

    async def list_task_types(self, only: str | None = None) -> list[TaskTypeRecord]:
        now = self._clock.now()
        where, params = ("WHERE name = ?", [only]) if only else ("", [])
        types = await self._fetchall(
            "SELECT name, paused, first_seen_at, max_running, max_per_second "
            f"FROM task_types {where} ORDER BY name",
            params,
        )
        counts = await self._counts(now, only)
        return [
            TaskTypeRecord(
                name=name,
                paused=bool(paused),
                first_seen_at=seen,
                counts=counts.get(name, {}),
                limits=ConcurrencyLimits(max_running, max_per_second),
            )
            for name, paused, seen, max_running, max_per_second in types
        ]

    async def _counts(
        self, now: Micros, only: str | None = None
    ) -> dict[str, dict[TaskState, int]]:
        """Tasks per type and visible state, from the ``task_counts`` table.

        Queued and group-waiting tasks are split into SCHEDULED and PENDING by one range
        read of the ``tasks_due`` index (not yet due), so nothing scans the tasks table.
        """
        where, params = ("AND type = ?", [only]) if only else ("", [])
        rows = await self._fetchall(
            f"SELECT type, state, tasks FROM task_counts WHERE tasks > 0 {where}", params
        )
        not_due = dict(
            await self._fetchall(
                f"""SELECT type, count(*) FROM tasks INDEXED BY tasks_due
                    WHERE state IN (2, 7) AND due_at > ? {where} GROUP BY type""",
                [now, *params],
            )
        )
        counts: dict[str, dict[TaskState, int]] = {}
        for type_name, state, count in rows:
            per_type = counts.setdefault(type_name, {})
            visible = TaskState(state)
            if visible in WAITING_STATES:
                visible = TaskState.PENDING
            per_type[visible] = per_type.get(visible, 0) + count
        for type_name, later in not_due.items():
            per_type = counts.setdefault(type_name, {})
            per_type[TaskState.PENDING] = per_type.get(TaskState.PENDING, 0) - later
            per_type[TaskState.SCHEDULED] = later
            if not per_type[TaskState.PENDING]:
                del per_type[TaskState.PENDING]
        return counts

    async def add_worker(self, worker: WorkerRecord) -> None:
        await self._w.submit(self._add_worker, worker)

    async def remove_worker(self, session_id: str) -> None:
        await self._w.submit(self._remove_worker, session_id)

    async def set_worker_draining(self, session_id: str) -> None:
        await self._w.submit(self._worker_draining, session_id)

    async def list_workers(self, seen_since: Micros) -> list[WorkerRecord]:
        rows = await self._fetchall(
            f"SELECT {WORKER_COLUMNS} FROM workers WHERE last_heartbeat_at >= ? "
            "ORDER BY worker_id, session_id",
            (seen_since,),
        )
        in_flight = dict(
            await self._fetchall(
                "SELECT session_id, count(*) FROM tasks WHERE state = 3 GROUP BY session_id"
            )
        )
        return [worker_from_row(row, in_flight.get(row[0], 0)) for row in rows]

    async def stats(self) -> Stats:
        now = self._clock.now()
        by_type = await self._counts(now)
        totals: dict[TaskState, int] = {}
        for counts in by_type.values():
            for state, count in counts.items():
                totals[state] = totals.get(state, 0) + count
        (retries, over_limit), *_ = await self._fetchall(
            "SELECT coalesce(sum(retries), 0), coalesce(sum(exhausted), 0) FROM task_counts"
        )
        most = await self._fetchall(
            "SELECT id, type, attempts, max_attempts FROM tasks INDEXED BY tasks_retried "
            "WHERE attempts > 1 ORDER BY attempts DESC, id DESC LIMIT 20"
        )
        (finished,), *_ = await self._fetchall(
            "SELECT count(*) FROM tasks WHERE finished_at > ?", (now - 60 * MICROS_PER_SECOND,)
        )
        # Handler start minus due time of the latest finished attempts (the worker reported
        # when it started them).
        lateness = await self._fetchall(
            "SELECT started_at - due_at FROM attempts INDEXED BY attempts_leased "
            "WHERE leased_at IS NOT NULL AND finished_at IS NOT NULL AND due_at IS NOT NULL "
            "ORDER BY leased_at DESC LIMIT 1000"
        )
        return Stats(
            totals=totals,
            by_type=by_type,
            retries=retries,
            over_retry_limit=over_limit,
            most_retried=tuple(tuple(row) for row in most),
            finished_last_minute=finished,
            lateness=tuple(sorted(row[0] for row in lateness)),
        )

    async def explain_facts(self, task_id: str, workers_seen_since: Micros) -> ExplainFacts | None:
        async with self._snapshot() as conn:
            return await read_explain_facts(conn, task_id, self._clock.now(), workers_seen_since)

    # -- change feed -------------------------------------------------------------------------

    async def _revision(self) -> int:
        rows = await self._fetchall("SELECT value FROM meta WHERE key = 'revision'")
        return int(rows[0][0])

    async def revision(self) -> int:
        return await self._revision()

    async def history_floor(self) -> int:
        rows = await self._fetchall("SELECT value FROM meta WHERE key = 'history_floor'")
        return int(rows[0][0]) if rows else 0

    async def changes_since(self, cursor: tuple[int, str], limit: int) -> list[Change]:
        revision, task_id = cursor
        rows = await self._fetchall(
            f"""SELECT * FROM (
                    SELECT revision AS r, id AS i, 0 AS deleted, client AS c, {TASK_COLUMNS}
                    FROM tasks WHERE (revision, id) > (?, ?)
                    ORDER BY revision, id LIMIT ?)
                UNION ALL
                SELECT * FROM (
                    SELECT revision, task_id, 1, client, task_id, type, {_TOMBSTONE_PADDING}
                    FROM deleted_tasks WHERE (revision, task_id) > (?, ?)
                    ORDER BY revision, task_id LIMIT ?)
                ORDER BY 1, 2 LIMIT ?""",
            (revision, task_id, limit, revision, task_id, limit, limit),
        )
        return [
            Change(
                revision=row[0],
                task_id=row[1],
                task=None if row[2] else task_from_row(row[4:]),
                type=row[5],
                client=row[3],
            )
            for row in rows
        ]

    async def data_version(self) -> int:
        rows = await self._fetchall("PRAGMA data_version")
        return int(rows[0][0])


async def _fetchall(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    async with conn.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _attempts_of(
    conn: aiosqlite.Connection, task_ids: Sequence[str]
) -> dict[str, list[AttemptRecord]]:
    found: dict[str, list[AttemptRecord]] = {task_id: [] for task_id in task_ids}
    for start in range(0, len(task_ids), 500):
        chunk = list(task_ids[start : start + 500])
        rows = await _fetchall(
            conn,
            f"SELECT task_id, {ATTEMPT_COLUMNS} FROM attempts "
            f"WHERE task_id IN ({placeholders(len(chunk))}) ORDER BY task_id, number",
            chunk,
        )
        for row in rows:
            found[row[0]].append(attempt_from_row(row[1:]))
    return found


# A deletion has only id and type: NULL for the other task columns, so both halves of the
# change feed's UNION have the same shape.
_TOMBSTONE_PADDING = ", ".join(["NULL"] * (TASK_COLUMNS.count(",") + 1 - 2))


# -- small write handlers ------------------------------------------------------------------


async def _register_types(tx: Tx, batches: Sequence[tuple[str, ...]]) -> list[None]:
    names = sorted({name for names in batches for name in names})
    await tx.conn.executemany(
        "INSERT OR IGNORE INTO task_types (name, first_seen_at) VALUES (?, ?)",
        [(name, tx.now) for name in names],
    )
    return [None] * len(batches)


async def _set_paused(tx: Tx, requests: Sequence[tuple[str, bool]]) -> list[None]:
    for name, paused in requests:
        await _update_type(tx, name, "UPDATE task_types SET paused = ?", (int(paused),))
    return [None] * len(requests)


async def _set_limits(tx: Tx, requests: Sequence[tuple[str, ConcurrencyLimits]]) -> list[None]:
    for name, limits in requests:
        await _update_type(
            tx,
            name,
            "UPDATE task_types SET max_running = ?, max_per_second = ?",
            (limits.max_running, limits.max_per_second),
        )
    return [None] * len(requests)


async def _update_type(tx: Tx, name: str, update: str, values: tuple[object, ...]) -> None:
    async with tx.conn.execute(f"{update} WHERE name = ? RETURNING name", (*values, name)) as cur:
        if await cur.fetchone() is None:
            raise NotFound(f"task type {name!r} not found")


async def _add_worker(tx: Tx, workers: Sequence[WorkerRecord]) -> list[None]:
    await tx.conn.executemany(
        f"INSERT OR REPLACE INTO workers ({WORKER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (w.session_id, w.worker_id, w.scheduler_id, w.hostname, w.pid, w.version,
             json.dumps(list(w.task_types)), w.slots, w.connected_at, w.last_heartbeat_at,
             int(w.draining))
            for w in workers
        ],
    )  # fmt: skip
    return [None] * len(workers)


async def _remove_worker(tx: Tx, session_ids: Sequence[str]) -> list[None]:
    await tx.conn.executemany(
        "DELETE FROM workers WHERE session_id = ?", [(s,) for s in session_ids]
    )
    return [None] * len(session_ids)


async def _worker_draining(tx: Tx, session_ids: Sequence[str]) -> list[None]:
    await tx.conn.executemany(
        "UPDATE workers SET draining = 1 WHERE session_id = ?", [(s,) for s in session_ids]
    )
    return [None] * len(session_ids)


def _qualified(table: str, columns: str) -> str:
    """``"a, b"`` as ``"t.a, t.b"``: the tasks and attempts tables share column names."""
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))
