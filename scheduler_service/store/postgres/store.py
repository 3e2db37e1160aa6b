"""PostgresTaskStore: the task store on a PostgreSQL server shared by scheduler replicas.

Work in progress (issue 8). It follows the SQLite store's interface and semantics method
by method, and each ported method is run by the same contract tests as SQLite's. So far:
opening (migrations under an advisory lock), the group-commit writer with revisions in
commit order across replicas, commit notifications between replicas (LISTEN/NOTIFY), task
types with their counts and limits, and the workers table.

Not yet: tasks, leases and claims, schedules, retention, stats and explanations. Until
then a ``postgresql://`` URL is refused at start-up (``store.base.sqlite_path``).

Rows map to records through the SQLite store's column lists and row functions
(``sqlite/rows.py``): both schemas use the same names and value encodings on purpose.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from ...domain.clock import Clock, SystemClock
from ...domain.errors import NotFound
from ...domain.model import (
    WAITING_STATES,
    ConcurrencyLimits,
    Micros,
    TaskState,
    TaskTypeRecord,
    WorkerRecord,
)
from ..base import Commit, CommitListener
from ..sqlite.rows import WORKER_COLUMNS, worker_from_row
from .connection import create_pool, migrate
from .writer import COMMIT_CHANNEL, PgGroupCommitWriter, PgTx, PgWriteKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostgresOptions:
    clock: Clock = field(default_factory=SystemClock)
    pool_size: int = 10


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
        self._add_worker = PgWriteKind("add_worker", _add_worker)
        self._remove_worker = PgWriteKind("remove_worker", _remove_worker)
        self._worker_draining = PgWriteKind("worker_draining", _worker_draining)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
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
