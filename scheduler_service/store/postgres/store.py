"""PostgresTaskStore: the task store on a PostgreSQL server shared by scheduler replicas.

Selected by a ``postgresql://`` ``--database`` URL (``store/factory.py``). It implements the
whole store interface with the SQLite store's semantics, method by method, and the SQLite
contract tests run against it unchanged (``tests/integration/store/test_postgres_*.py``).

What differs, and why:

- Writes go through a group-commit writer (``writer.py``) whose transactions first lock the
  revision row, so the writes of all replicas commit one at a time in revision order (the
  change feed's cursor needs that), and a commit that changed tasks is announced to every
  replica by ``NOTIFY`` (``data_version``), instead of SQLite's polled file counter.
- Claims take candidate rows ``FOR UPDATE SKIP LOCKED``; lease deadlines are on the
  database server's clock, the one clock replicas on many hosts share (``lease_writes.py``).
- Reads that need one snapshot run in REPEATABLE READ read-only transactions.

Rows map to records through the SQLite store's column lists and row functions
(``sqlite/rows.py``): both schemas use the same names and value encodings on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

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
from ..errors import DatabaseUnusable
from ..sqlite.lease_writes import Decide
from ..sqlite.rows import (
    ATTEMPT_COLUMNS,
    TASK_COLUMNS,
    WORKER_COLUMNS,
    attempt_from_row,
    task_from_row,
    worker_from_row,
)
from ..sqlite.schedule_writes import SCHEDULE_COLUMNS, schedule_from_row
from .connection import create_pool, migrate
from .explain_facts import read_explain_facts
from .lease_writes import LeaseClock, PgLeaseWrites
from .retention import (
    any_old_tombstones,
    anything_to_prune,
    prune_finished,
    prune_tombstones,
)
from .schedule_writes import PgScheduleWrites
from .stats import read_stats
from .task_reads import attempts_of, changes_since, list_page, qualified, snapshot
from .task_writes import PgTaskWrites, record_progress
from .writer import COMMIT_CHANNEL, PgGroupCommitWriter, PgTx, PgWriteKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostgresOptions:
    """The SQLite store's options that mean something here (SQLite's ``synchronous``,
    ``boot_id`` and ``crash_at`` do not: durability is the server's, lease deadlines are on
    the server's clock)."""

    clock: Clock = field(default_factory=SystemClock)
    pool_size: int = 10
    #: Schedule slots missed by at most this long still fire (late).
    schedule_grace: Micros = 60 * MICROS_PER_SECOND
    #: Waiting this long raises a task's effective priority by one point.
    priority_aging: Micros = 1 * MICROS_PER_SECOND
    #: How long an idempotency key keeps returning its first task.
    idempotency_retention: Micros = 24 * 3600 * MICROS_PER_SECOND
    #: What happens to a task when an attempt ends (tests inject their own rules).
    decide: Decide = after_attempt
    #: Whose clock lease deadlines are on. "server" (production): the database server's,
    #: computed in SQL, the one clock that scheduler replicas on several hosts share.
    #: "store": this store's ``clock`` (its wall clock, ``now()``), for tests that move time
    #: by hand with a ManualClock, which cannot move the server's clock; the SQL is the
    #: same, given the store's time instead of NULL (see ``lease_writes.py``).
    lease_clock: LeaseClock = "server"


class PostgresTaskStore:
    def __init__(self, url: str, options: PostgresOptions | None = None) -> None:
        self.url = url
        self.options = options or PostgresOptions()
        self._clock = self.options.clock
        self._listeners: list[CommitListener] = []
        self._pool: asyncpg.Pool | None = None
        self._writer: PgGroupCommitWriter | None = None
        # LISTEN needs a connection of its own, outside the pool, for as long as we run.
        self._listener_conn: asyncpg.Connection | None = None
        self._commits_seen = 0
        self._register_types = PgWriteKind("register_types", _register_types)
        self._pause = PgWriteKind("pause", _set_paused)
        self._set_limits = PgWriteKind("set_limits", _set_limits)
        self._add_worker = PgWriteKind("add_worker", _add_worker, quiet=True)
        self._remove_worker = PgWriteKind("remove_worker", _remove_worker, quiet=True)
        self._worker_draining = PgWriteKind("worker_draining", _worker_draining, quiet=True)
        # Leases (lease_writes.py, claims.py).
        leases = PgLeaseWrites(
            self.options.decide, self.options.priority_aging, self.options.lease_clock
        )
        self._leases = leases
        self._claim = PgWriteKind("claim", leases.claim, last=True, quiet=True)
        self._end = PgWriteKind("end", leases.end)
        self._heartbeat = PgWriteKind("heartbeat", leases.heartbeat, quiet=True)
        self._reclaim = PgWriteKind("reclaim", leases.reclaim_expired, quiet=True)
        self._release = PgWriteKind("release", leases.release_sessions)
        schedules = PgScheduleWrites(self._create_slot_tasks, self.options.schedule_grace)
        self._create_schedule = PgWriteKind("create_schedule", schedules.create)
        self._pause_schedule = PgWriteKind("pause_schedule", schedules.set_paused)
        self._delete_schedule = PgWriteKind("delete_schedule", schedules.delete)
        self._fire_schedules = PgWriteKind("fire_schedules", schedules.fire_due)
        # Tasks (task_writes.py, retention.py).
        tasks = PgTaskWrites(
            IdGenerator(), self.options.priority_aging, self.options.idempotency_retention
        )
        self._task_writes = tasks
        self._create = PgWriteKind("create", tasks.create)
        self._delete = PgWriteKind("delete", tasks.delete)
        self._delete_matching = PgWriteKind("delete_matching", tasks.delete_matching)
        self._cancel = PgWriteKind("cancel", tasks.cancel)
        self._retry = PgWriteKind("retry", tasks.retry)
        self._run_now = PgWriteKind("run_now", tasks.run_now)
        self._progress = PgWriteKind("progress", record_progress, quiet=True)
        self._prune = PgWriteKind("prune", prune_finished, quiet=True)
        self._prune_tombstones = PgWriteKind("prune_tombstones", prune_tombstones, quiet=True)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._open()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            host = self.url.split("@")[-1]  # never the password
            raise DatabaseUnusable(
                f"cannot use the PostgreSQL database {host!r}: {exc} "
                "(is the server up, the database created, the user allowed?)"
            ) from exc

    async def _open(self) -> None:
        self._pool = await create_pool(self.url, max_size=self.options.pool_size)
        async with self._pool.acquire() as conn:
            await migrate(conn)
        self._listener_conn = await asyncpg.connect(self.url)
        await self._listener_conn.add_listener(COMMIT_CHANNEL, self._on_notification)
        self._writer = PgGroupCommitWriter(self._pool, self._clock, self._notify)
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._listener_conn is not None:
            await self._listener_conn.close()
            self._listener_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def add_commit_listener(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def _notify(self, revision: int, last_kinds: bool) -> None:
        commit = Commit(revision, claimed=last_kinds)
        for listener in self._listeners:
            listener(commit)

    def _on_notification(
        self, conn: asyncpg.Connection, pid: int, channel: str, payload: str
    ) -> None:
        """A commit of any replica, this one included (see :meth:`data_version`)."""
        self._commits_seen += 1

    @property
    def _w(self) -> PgGroupCommitWriter:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    @property
    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    # -- tasks -----------------------------------------------------------------------------

    async def create_tasks(self, specs: Sequence[TaskSpec]) -> list[tuple[TaskRecord, bool]]:
        return await self._w.submit(self._create, specs)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._p.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
        return task_from_row(tuple(row)) if row is not None else None

    async def get_task_with_attempts(
        self, task_id: str
    ) -> tuple[TaskRecord, list[AttemptRecord]] | None:
        # One statement is one snapshot: a task read and its attempts read apart could
        # straddle a commit (a reclaimed attempt beside the old lease).
        rows = await self._p.fetch(
            f"SELECT {qualified('t', TASK_COLUMNS)}, {qualified('a', ATTEMPT_COLUMNS)} "
            "FROM tasks t LEFT JOIN attempts a ON a.task_id = t.id "
            "WHERE t.id = $1 ORDER BY a.number",
            task_id,
        )
        if not rows:
            return None
        width = len(TASK_COLUMNS.split(","))
        records = [tuple(row) for row in rows]
        attempts = [attempt_from_row(row[width:]) for row in records if row[width] is not None]
        return task_from_row(records[0][:width]), attempts

    async def get_attempts(self, task_id: str) -> list[AttemptRecord]:
        rows = await self._p.fetch(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = $1 ORDER BY number",
            task_id,
        )
        return [attempt_from_row(tuple(row)) for row in rows]

    async def get_attempts_of(self, task_ids: Sequence[str]) -> dict[str, list[AttemptRecord]]:
        async with self._p.acquire() as conn:
            return await attempts_of(conn, task_ids)

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
        async with self._p.acquire() as conn, snapshot(conn):
            return await list_page(conn, flt, self._clock.now(), limit, after_id, descending, full)

    async def list_tasks_with_attempts(
        self, flt: TaskFilter, *, limit: int, after_id: str | None, descending: bool
    ) -> tuple[list[TaskRecord], dict[str, list[AttemptRecord]], int]:
        async with self._p.acquire() as conn, snapshot(conn):
            now = self._clock.now()
            tasks, revision = await list_page(conn, flt, now, limit, after_id, descending, True)
            attempts = await attempts_of(conn, [task.id for task in tasks])
        return tasks, attempts, revision

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
        if not await anything_to_prune(self._p, older_than, self._clock.now()):
            return 0  # no write: an empty one would still hold every replica's writes
        return await self._w.submit(self._prune, (dict(older_than), limit))

    async def prune_tombstones(self, older_than: Micros, limit: int) -> int:
        if limit <= 0:
            return 0
        if not await any_old_tombstones(self._p, older_than, limit, self._clock.now()):
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

    async def changes_since(self, cursor: tuple[int, str], limit: int) -> list[Change]:
        return await changes_since(self._p, cursor, limit)

    # -- leasing ---------------------------------------------------------------------------

    async def claim(self, requests: Sequence[ClaimRequest]) -> ClaimOutcome:
        # One write for the whole round: every session's claim lands in one transaction.
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
        if not await self._leases.any_expired(self._p, self._clock.now()):
            return []  # no write: an empty one would still take a revision
        return await self._w.submit(self._reclaim, None)

    async def release_session(self, session_id: str, returned: bool = False) -> list[EndedAttempt]:
        return await self._w.submit(self._release, (session_id, returned))

    async def next_due_at(self) -> Micros | None:
        """When the next queued task that is not due yet becomes due (the dispatcher's
        timer); due times are on the schedulers' clock, like every time but leases."""
        value = await self._p.fetchval(
            "SELECT min(due_at) FROM tasks WHERE state = 2 AND due_at > $1",
            self._clock.now(),
        )
        return int(value) if value is not None else None

    # -- task types and workers ------------------------------------------------------------

    async def register_task_types(self, names: Sequence[str]) -> None:
        if names:
            await self._w.submit(self._register_types, tuple(names))

    async def task_type_names(self) -> set[str]:
        return {row["name"] for row in await self._p.fetch("SELECT name FROM task_types")}

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
        where, params = ("WHERE name = $1", [only]) if only else ("", [])
        types = await self._p.fetch(
            "SELECT name, paused, first_seen_at, max_running, max_per_second "
            f"FROM task_types {where} ORDER BY name",
            *params,
        )
        counts = await self._counts(now, only)
        return [
            TaskTypeRecord(
                name=row["name"],
                paused=bool(row["paused"]),
                first_seen_at=row["first_seen_at"],
                counts=counts.get(row["name"], {}),
                limits=ConcurrencyLimits(row["max_running"], row["max_per_second"]),
            )
            for row in types
        ]

    async def _counts(
        self, now: Micros, only: str | None = None
    ) -> dict[str, dict[TaskState, int]]:
        """Tasks per type and visible state, from ``task_counts``; queued tasks not yet
        due (one range of the ``tasks_due`` index) are SCHEDULED, the rest PENDING."""
        where, params = ("AND type = $1", [only]) if only else ("", [])
        rows = await self._p.fetch(
            f"SELECT type, state, tasks FROM task_counts WHERE tasks > 0 {where}", *params
        )
        later = "$2" if only else "$1"
        not_due = {
            row["type"]: row["count"]
            for row in await self._p.fetch(
                f"""SELECT type, count(*) AS count FROM tasks
                    WHERE state IN (2, 7) AND due_at > {later} {where} GROUP BY type""",
                *params,
                now,
            )
        }
        counts: dict[str, dict[TaskState, int]] = {}
        for row in rows:
            per_type = counts.setdefault(row["type"], {})
            visible = TaskState(row["state"])
            if visible in WAITING_STATES:
                visible = TaskState.PENDING
            per_type[visible] = per_type.get(visible, 0) + row["tasks"]
        for type_name, count in not_due.items():
            per_type = counts.setdefault(type_name, {})
            per_type[TaskState.PENDING] = per_type.get(TaskState.PENDING, 0) - count
            per_type[TaskState.SCHEDULED] = count
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
        rows = await self._p.fetch(
            f"SELECT {WORKER_COLUMNS} FROM workers WHERE last_heartbeat_at >= $1 "
            "ORDER BY worker_id, session_id",
            seen_since,
        )
        in_flight = {
            row["session_id"]: row["count"]
            for row in await self._p.fetch(
                "SELECT session_id, count(*) AS count FROM tasks WHERE state = 3 "
                "GROUP BY session_id"
            )
        }
        return [worker_from_row(tuple(row), in_flight.get(row["session_id"], 0)) for row in rows]

    # -- schedules -------------------------------------------------------------------------

    async def create_schedule(self, spec: ScheduleSpec) -> ScheduleRecord:
        return await self._w.submit(self._create_schedule, spec)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        row = await self._p.fetchrow(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1", schedule_id
        )
        return schedule_from_row(tuple(row)) if row is not None else None

    async def list_schedules(self, *, limit: int, after_id: str | None) -> list[ScheduleRecord]:
        rows = await self._p.fetch(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id > $1 ORDER BY id LIMIT $2",
            after_id or "",
            limit,
        )
        return [schedule_from_row(tuple(row)) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._w.submit(self._delete_schedule, schedule_id)

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> ScheduleRecord:
        return await self._w.submit(self._pause_schedule, (schedule_id, paused))

    async def fire_due_schedules(self) -> list[TaskRecord]:
        """Fire due slots; each slot fires once across all replicas (``schedule_writes``)."""
        return await self._w.submit(self._fire_schedules, None)

    async def next_schedule_at(self) -> Micros | None:
        value = await self._p.fetchval("SELECT min(next_fire_at) FROM schedules WHERE paused = 0")
        return int(value) if value is not None else None

    async def _create_slot_tasks(
        self, tx: PgTx, batches: Sequence[Sequence[TaskSpec]]
    ) -> Sequence[Sequence[tuple[TaskRecord, bool]]]:
        """The tasks of fired slots, made by the task writes' create handler in ``tx``."""
        return await self._task_writes.create(tx, batches)

    # -- stats and explanations ----------------------------------------------------------

    async def stats(self) -> Stats:
        now = self._clock.now()
        return await read_stats(self._p, await self._counts(now), now)

    async def explain_facts(self, task_id: str, workers_seen_since: Micros) -> ExplainFacts | None:
        # One snapshot for every read: REPEATABLE READ takes it at the first statement.
        async with (
            self._p.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await read_explain_facts(conn, task_id, self._clock.now(), workers_seen_since)

    # -- change feed -----------------------------------------------------------------------

    async def revision(self) -> int:
        value = await self._p.fetchval("SELECT value FROM meta WHERE key = 'revision'")
        return int(value)

    async def history_floor(self) -> int:
        value = await self._p.fetchval("SELECT value FROM meta WHERE key = 'history_floor'")
        return int(value) if value is not None else 0

    async def data_version(self) -> int:
        """Changes whenever any replica commits: the count of commit notifications this
        process has received (LISTEN), so asking costs no round trip."""
        await asyncio.sleep(0)  # notifications are delivered by the event loop
        return self._commits_seen


async def _register_types(tx: PgTx, batches: Sequence[tuple[str, ...]]) -> list[None]:
    names = sorted({name for names in batches for name in names})
    await tx.conn.executemany(
        "INSERT INTO task_types (name, first_seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(name, tx.now) for name in names],
    )
    return [None] * len(batches)


async def _set_paused(tx: PgTx, requests: Sequence[tuple[str, bool]]) -> list[None]:
    for name, paused in requests:
        await _update_type(tx, name, "UPDATE task_types SET paused = $2", (int(paused),))
    return [None] * len(requests)


async def _set_limits(tx: PgTx, requests: Sequence[tuple[str, ConcurrencyLimits]]) -> list[None]:
    for name, limits in requests:
        await _update_type(
            tx,
            name,
            "UPDATE task_types SET max_running = $2, max_per_second = $3",
            (limits.max_running, limits.max_per_second),
        )
    return [None] * len(requests)


async def _update_type(tx: PgTx, name: str, update: str, values: tuple[object, ...]) -> None:
    found = await tx.conn.fetchval(f"{update} WHERE name = $1 RETURNING name", name, *values)
    if found is None:
        raise NotFound(f"task type {name!r} not found")


async def _add_worker(tx: PgTx, workers: Sequence[WorkerRecord]) -> list[None]:
    await tx.conn.executemany(
        f"""INSERT INTO workers ({WORKER_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (session_id) DO UPDATE SET
                worker_id = excluded.worker_id, scheduler_id = excluded.scheduler_id,
                hostname = excluded.hostname, pid = excluded.pid, version = excluded.version,
                task_types = excluded.task_types, slots = excluded.slots,
                connected_at = excluded.connected_at,
                last_heartbeat_at = excluded.last_heartbeat_at, draining = excluded.draining""",
        [
            (w.session_id, w.worker_id, w.scheduler_id, w.hostname, w.pid, w.version,
             json.dumps(list(w.task_types)), w.slots, w.connected_at, w.last_heartbeat_at,
             int(w.draining))
            for w in workers
        ],
    )  # fmt: skip
    return [None] * len(workers)


async def _remove_worker(tx: PgTx, session_ids: Sequence[str]) -> list[None]:
    await tx.conn.executemany(
        "DELETE FROM workers WHERE session_id = $1", [(s,) for s in session_ids]
    )
    return [None] * len(session_ids)


async def _worker_draining(tx: PgTx, session_ids: Sequence[str]) -> list[None]:
    await tx.conn.executemany(
        "UPDATE workers SET draining = 1 WHERE session_id = $1", [(s,) for s in session_ids]
    )
    return [None] * len(session_ids)
