"""Write handlers for retention on PostgreSQL: remove old finished tasks and old deletion
records. A port of the SQLite store's ``retention.py``; the rules (what is kept whatever
its age, oldest first per state, ids bounded by the cutoff) are explained there.

Unlike SQLite, the statements run on the server, not on the event loop, so a batch needs
no time budget: each request reads its tasks in one statement per state and deletes them
in three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from ...domain.model import Micros, TaskState
from ..sqlite.retention import id_bound
from .writer import PgTx

_OLD_FINISHED = """
SELECT id, type, attempts, max_attempts, client FROM tasks
WHERE state = $1 AND id < $2 AND finished_at < $3
  AND NOT (state = 5 AND on_failure = 1 AND grp != '')
  AND NOT EXISTS (
      SELECT 1 FROM tasks AS follower
      WHERE follower.state = 8 AND follower.cached_from = tasks.id)
ORDER BY id LIMIT $4
"""

# The oldest tombstones by revision (revisions grow with time), of which those past the
# cutoff go: the read stops after ``limit`` rows instead of scanning every newer one.
_OLD_TOMBSTONES = """
DELETE FROM deleted_tasks WHERE (revision, task_id) IN (
    SELECT revision, task_id FROM (
        SELECT revision, task_id, deleted_at FROM deleted_tasks
        ORDER BY revision, task_id LIMIT $1) AS oldest
    WHERE deleted_at < $2)
RETURNING revision
"""
# The change feed is complete only after the newest deletion record ever removed: a
# watcher resuming from before it would silently miss deletions (see history_floor).
_RAISE_HISTORY_FLOOR = """
INSERT INTO meta (key, value) VALUES ('history_floor', $1)
ON CONFLICT (key) DO UPDATE SET value = GREATEST(meta.value, excluded.value)
"""

PruneRequest = tuple[Mapping[TaskState, Micros], int]


async def anything_to_prune(
    conn: asyncpg.Connection | asyncpg.Pool, ages: Mapping[TaskState, Micros], now: Micros
) -> bool:
    """Whether a prune request would find a task, read outside the writer.

    Every write transaction takes the revision row lock, which serialises the writes of
    all replicas, even when it changes nothing; an idle pruner would take it on each
    round. So the store asks first, without a lock (a replica pruning meanwhile only makes
    the write find less).
    """
    for state, age in sorted(ages.items()):
        _check_age(state, age)
        cutoff = now - age
        if await conn.fetchrow(_OLD_FINISHED, int(state), id_bound(cutoff), cutoff, 1):
            return True
    return False


async def any_old_tombstones(
    conn: asyncpg.Connection | asyncpg.Pool, age: Micros, limit: int, now: Micros
) -> bool:
    """Whether a tombstone prune would remove anything (see :func:`anything_to_prune`)."""
    _check_tombstone_age(age)
    found = await conn.fetchval(
        "SELECT 1 FROM (SELECT deleted_at FROM deleted_tasks ORDER BY revision, task_id "
        "LIMIT $1) AS oldest WHERE deleted_at < $2 LIMIT 1",
        limit,
        now - age,
    )
    return found is not None


def _check_age(state: TaskState, age: Micros) -> None:
    if not state.is_terminal or age <= 0:
        raise ValueError(f"cannot prune {state.name} tasks after {age} µs")


def _check_tombstone_age(age: Micros) -> None:
    if age <= 0:
        raise ValueError(f"cannot prune deletion records after {age} µs")


async def prune_finished(tx: PgTx, requests: Sequence[PruneRequest]) -> list[int]:
    """For each request (ages per finished state, limit): remove at most ``limit`` tasks
    that finished longer ago than their state's age, oldest first; answers how many."""
    return [await _prune_one(tx, ages, limit) for ages, limit in requests]


async def _prune_one(tx: PgTx, ages: Mapping[TaskState, Micros], limit: int) -> int:
    removed: list[tuple[str, str, int, int, str, TaskState]] = []
    for state, age in sorted(ages.items()):
        _check_age(state, age)
        if len(removed) >= limit:
            break
        cutoff = tx.now - age
        rows = await tx.conn.fetch(
            _OLD_FINISHED, int(state), id_bound(cutoff), cutoff, limit - len(removed)
        )
        removed.extend((*tuple(row), state) for row in rows)
    if not removed:
        return 0
    ids = [row[0] for row in removed]
    await tx.conn.execute("DELETE FROM tasks WHERE id = ANY($1::text[])", ids)
    await tx.conn.execute("DELETE FROM attempts WHERE task_id = ANY($1::text[])", ids)
    await tx.conn.execute("DELETE FROM task_labels WHERE task_id = ANY($1::text[])", ids)
    for _, type_name, attempts, max_attempts, _, state in removed:
        tx.counts.add(type_name, int(state), attempts, max_attempts, -1)
    await tx.conn.executemany(
        "INSERT INTO deleted_tasks (revision, task_id, type, deleted_at, client) "
        "VALUES ($1, $2, $3, $4, $5)",
        [(tx.revision, task_id, type_name, tx.now, client)
         for task_id, type_name, _, _, client, _ in removed],
    )  # fmt: skip
    return len(removed)


async def prune_tombstones(tx: PgTx, requests: Sequence[tuple[Micros, int]]) -> list[int]:
    """For each request (age, limit): remove at most ``limit`` of the oldest deletion
    records older than ``age``; answers how many."""
    answers = []
    for age, limit in requests:
        _check_tombstone_age(age)
        rows = await tx.conn.fetch(_OLD_TOMBSTONES, limit, tx.now - age)
        removed = [row["revision"] for row in rows]
        if removed:
            await tx.conn.execute(_RAISE_HISTORY_FLOOR, max(removed))
        answers.append(len(removed))
    return answers
