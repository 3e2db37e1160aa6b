"""The facts ExplainTask needs, read in one snapshot on PostgreSQL (the port of
``sqlite/explain_facts.py``; see ``domain/explain.py`` for how they are reasoned about).

The caller runs these reads in a REPEATABLE READ, read-only transaction: every statement
then sees the snapshot of the first, so the task, its group, the limits and the workers
are as of one moment even while other replicas write.
"""

from __future__ import annotations

import json

import asyncpg

from ...domain.explain import ExplainFacts, LimitFacts
from ...domain.model import ConcurrencyLimits, Micros, TaskState
from ..sqlite.rows import ATTEMPT_COLUMNS, TASK_COLUMNS, attempt_from_row, task_from_row


async def _limit_facts(
    conn: asyncpg.Connection, scope: str, limits: ConcurrencyLimits, running_sql: str, value: str,
    now: Micros,
) -> LimitFacts | None:  # fmt: skip
    if not limits.is_set:
        return None
    running = await conn.fetchval(running_sql, value)
    starts, frees = 0, None
    if limits.max_per_second > 0:
        _, window = limits.rate_window()
        row = await conn.fetchrow(
            "SELECT count(*), min(started_at) FROM rate_starts "
            "WHERE scope = $1 AND started_at > $2",
            scope,
            now - window,
        )
        assert row is not None  # an aggregate answers one row
        starts, oldest = row[0], row[1]
        frees = oldest + window if oldest is not None else None
    return LimitFacts(limits, int(running), int(starts), frees)


async def read_explain_facts(
    conn: asyncpg.Connection, task_id: str, now: Micros, workers_seen_since: Micros
) -> ExplainFacts | None:
    """The facts ExplainTask reasons from. The caller holds a REPEATABLE READ transaction
    on ``conn``, so that they all come from one snapshot."""
    row = await conn.fetchrow(
        f"SELECT {TASK_COLUMNS}, claim_key, seq FROM tasks WHERE id = $1", task_id
    )
    if row is None:
        return None
    task = task_from_row(tuple(row)[:-2])
    claim_key, seq = row["claim_key"], row["seq"]
    attempt_row = await conn.fetchrow(
        f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = $1 ORDER BY number DESC LIMIT 1",
        task_id,
    )
    type_row = await conn.fetchrow(
        "SELECT paused, max_running, max_per_second FROM task_types WHERE name = $1", task.type
    )
    paused, type_limits = False, ConcurrencyLimits()
    if type_row is not None:
        paused, type_limits = bool(type_row[0]), ConcurrencyLimits(type_row[1], type_row[2])
    type_facts = await _limit_facts(
        conn, f"type:{task.type}", type_limits,
        "SELECT count(*) FROM tasks WHERE state = 3 AND type = $1",
        task.type, now,
    )  # fmt: skip
    key_facts = None
    if task.concurrency_key:
        key_row = await conn.fetchrow(
            "SELECT max_running, max_per_second FROM concurrency_keys WHERE key = $1",
            task.concurrency_key,
        )
        key_limits = ConcurrencyLimits(key_row[0], key_row[1]) if key_row else ConcurrencyLimits()
        key_facts = await _limit_facts(
            conn, f"key:{task.concurrency_key}", key_limits,
            "SELECT count(*) FROM tasks "
            "WHERE state = 3 AND concurrency_key = $1 AND concurrency_key != ''",
            task.concurrency_key, now,
        )  # fmt: skip
    group_active, waiting_ahead = None, 0
    if task.state == TaskState.WAITING:
        active = await conn.fetchrow(
            "SELECT id, state FROM tasks WHERE grp = $1 AND grp != '' "
            "AND (state IN (2, 3) OR (state = 5 AND on_failure = 1)) LIMIT 1",
            task.group,
        )
        group_active = (active[0], TaskState(active[1])) if active else None
        waiting_ahead = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE grp = $1 AND state = 7 AND seq < $2",
            task.group,
            seq,
        )
    workers, free = 0, 0
    for types_json, slots, in_flight in await conn.fetch(
        "SELECT w.task_types, w.slots, (SELECT count(*) FROM tasks t "
        "WHERE t.state = 3 AND t.session_id = w.session_id) "
        "FROM workers w WHERE w.last_heartbeat_at >= $1 AND w.draining = 0",
        workers_seen_since,
    ):
        if task.type in json.loads(types_json):
            workers += 1
            free += max(0, slots - in_flight)
    leader_state = None
    if task.state == TaskState.FOLLOWING:
        leader = await conn.fetchval("SELECT state FROM tasks WHERE id = $1", task.cached_from)
        leader_state = TaskState(leader) if leader is not None else None
    ahead = await conn.fetchval(
        "SELECT count(*) FROM tasks WHERE state = 2 AND type = $1 AND claim_key < $2 "
        "AND due_at <= $3",
        task.type,
        claim_key,
        now,
    )
    return ExplainFacts(
        task=task,
        last_attempt=attempt_from_row(tuple(attempt_row)) if attempt_row else None,
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
