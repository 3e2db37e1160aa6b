"""The facts ExplainTask needs, read in one snapshot (see ``domain/explain.py``)."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from ...domain.explain import ExplainFacts, LimitFacts
from ...domain.model import ConcurrencyLimits, Micros, TaskState
from .rows import ATTEMPT_COLUMNS, TASK_COLUMNS, attempt_from_row, task_from_row


async def _one(conn: aiosqlite.Connection, sql: str, params: Any = ()) -> Any:
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def _limit_facts(
    conn: aiosqlite.Connection, scope: str, limits: ConcurrencyLimits, running_sql: str, value: str,
    now: Micros,
) -> LimitFacts | None:  # fmt: skip
    if not limits.is_set:
        return None
    (running,) = await _one(conn, running_sql, (value,))
    starts, frees = 0, None
    if limits.max_per_second > 0:
        _, window = limits.rate_window()
        starts, oldest = await _one(
            conn,
            "SELECT count(*), min(started_at) FROM rate_starts WHERE scope = ? AND started_at > ?",
            (scope, now - window),
        )
        frees = oldest + window if oldest is not None else None
    return LimitFacts(limits, int(running), int(starts), frees)


async def read_explain_facts(
    conn: aiosqlite.Connection, task_id: str, now: Micros, workers_seen_since: Micros
) -> ExplainFacts | None:
    """The facts ExplainTask reasons from. The caller holds a read transaction on
    ``conn``, so that they all come from one snapshot."""
    row = await _one(
        conn, f"SELECT {TASK_COLUMNS}, claim_key, rowid FROM tasks WHERE id = ?", (task_id,)
    )
    if row is None:
        return None
    task = task_from_row(row)
    claim_key, rowid = row[-2], row[-1]
    attempt_row = await _one(
        conn,
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = ? ORDER BY number DESC",
        (task_id,),
    )
    type_row = await _one(
        conn,
        "SELECT paused, max_running, max_per_second FROM task_types WHERE name = ?",
        (task.type,),
    )
    paused, type_limits = False, ConcurrencyLimits()
    if type_row is not None:
        paused, type_limits = bool(type_row[0]), ConcurrencyLimits(type_row[1], type_row[2])
    type_facts = await _limit_facts(
        conn, f"type:{task.type}", type_limits,
        "SELECT count(*) FROM tasks INDEXED BY tasks_type_state WHERE state = 3 AND type = ?",
        task.type, now,
    )  # fmt: skip
    key_facts = None
    if task.concurrency_key:
        key_row = await _one(
            conn,
            "SELECT max_running, max_per_second FROM concurrency_keys WHERE key = ?",
            (task.concurrency_key,),
        )
        key_limits = ConcurrencyLimits(key_row[0], key_row[1]) if key_row else ConcurrencyLimits()
        key_facts = await _limit_facts(
            conn, f"key:{task.concurrency_key}", key_limits,
            "SELECT count(*) FROM tasks INDEXED BY tasks_running_key "
            "WHERE state = 3 AND concurrency_key = ? AND concurrency_key != ''",
            task.concurrency_key, now,
        )  # fmt: skip
    group_active, waiting_ahead = None, 0
    if task.state == TaskState.WAITING:
        active = await _one(
            conn,
            "SELECT id, state FROM tasks INDEXED BY tasks_group_active WHERE grp = ? "
            "AND grp != '' AND (state IN (2, 3) OR (state = 5 AND on_failure = 1))",
            (task.group,),
        )
        group_active = (active[0], TaskState(active[1])) if active else None
        (waiting_ahead,) = await _one(
            conn,
            "SELECT count(*) FROM tasks INDEXED BY tasks_group_waiting "
            "WHERE grp = ? AND state = 7 AND rowid < ?",
            (task.group, rowid),
        )
    workers, free = 0, 0
    async with conn.execute(
        "SELECT w.task_types, w.slots, (SELECT count(*) FROM tasks t "
        "WHERE t.state = 3 AND t.session_id = w.session_id) "
        "FROM workers w WHERE w.last_heartbeat_at >= ? AND w.draining = 0",
        (workers_seen_since,),
    ) as cursor:
        for types_json, slots, in_flight in await cursor.fetchall():
            if task.type in json.loads(types_json):
                workers += 1
                free += max(0, slots - in_flight)
    leader_state = None
    if task.state == TaskState.FOLLOWING:
        leader = await _one(conn, "SELECT state FROM tasks WHERE id = ?", (task.cached_from,))
        leader_state = TaskState(leader[0]) if leader else None
    (ahead,) = await _one(
        conn,
        "SELECT count(*) FROM tasks INDEXED BY tasks_claim "
        "WHERE state = 2 AND type = ? AND claim_key < ? AND due_at <= ?",
        (task.type, claim_key, now),
    )
    return ExplainFacts(
        task=task,
        last_attempt=attempt_from_row(attempt_row) if attempt_row else None,
        type_paused=paused,
        type_limits=type_facts,
        key_limits=key_facts,
        group_active=group_active,
        group_waiting_ahead=int(waiting_ahead),
        workers=workers,
        free_slots=free,
        tasks_ahead=int(ahead) if task.state == 2 else 0,
        leader_state=leader_state,
    )
