"""The result cache with single flight (``cache: true`` on create).

Identical means same client, same type and same canonical JSON payload: ``cache_key``
hashes the three, so a client never receives another client's result. A
cached create either copies the result of an identical task that succeeded (within its
``cache_max_age``), or *follows* an identical task that has not finished — stored as
FOLLOWING with ``cached_from`` naming it — or, when there is neither, runs and leads. When a
leader finishes, its followers finish the same way in the same transaction; when it is
cancelled or deleted, its earliest follower takes over and the others follow that one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ...domain.model import Micros, TaskRecord, TaskSpec, TaskState
from .counts import Shape
from .writer import Tx

FOLLOWING = int(TaskState.FOLLOWING)


def _key(client: str, type_name: str, payload_json: str) -> str:
    # The client is part of the key: one client never sees another's results.
    text = f"{client}\x00{type_name}\x00{payload_json}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(spec: TaskSpec) -> str:
    return _key(spec.client, spec.type, spec.payload_json)


def cache_key_of(record: TaskRecord) -> str:
    return _key(record.client, record.type, record.payload_json) if record.cache else ""


async def find_result(tx: Tx, key: str, max_age: Micros | None) -> tuple[str, str] | None:
    """The newest identical task that succeeded by running (not itself a copy)."""
    oldest = tx.now - max_age if max_age is not None else 0
    async with tx.conn.execute(
        "SELECT id, result FROM tasks INDEXED BY tasks_cache_done "
        "WHERE cache = 1 AND state = 4 AND cached = 0 AND cache_key = ? AND finished_at >= ? "
        "ORDER BY finished_at DESC LIMIT 1",
        (key, oldest),
    ) as cursor:
        row = await cursor.fetchone()
    return (row[0], row[1] or "{}") if row else None


async def find_leader(tx: Tx, key: str) -> str | None:
    """The oldest identical task that has not finished (queued, waiting or running)."""
    async with tx.conn.execute(
        "SELECT id FROM tasks INDEXED BY tasks_cache_live "
        "WHERE cache = 1 AND state IN (2, 3, 7) AND cache_key = ? ORDER BY rowid LIMIT 1",
        (key,),
    ) as cursor:
        row = await cursor.fetchone()
    return row[0] if row else None


async def finish_followers(
    tx: Tx, leader_id: str, state: TaskState, result_json: str | None, error: str
) -> None:
    """The leader finished: its followers finish the same way, now."""
    follower_error = f"joined task {leader_id}, which failed: {error}" if error else ""
    async with tx.conn.execute(
        """UPDATE tasks INDEXED BY tasks_followers
           SET state = ?, result = ?, error = ?, finished_at = ?, updated_at = ?, revision = ?
           WHERE state = 8 AND cached_from = ?
           RETURNING type, attempts, max_attempts""",
        (
            int(state), result_json, follower_error, tx.now, tx.now, await tx.revision(),
            leader_id,
        ),
    ) as cursor:  # fmt: skip
        rows = await cursor.fetchall()
    for type_name, attempts, max_attempts in rows:
        tx.counts.changed(
            Shape(type_name, FOLLOWING, attempts, max_attempts),
            Shape(type_name, int(state), attempts, max_attempts),
        )


async def hand_over(tx: Tx, leader_id: str, claim_key_of: Callable[[Micros, int], Micros]) -> None:
    """The leader went away unfinished (cancelled, deleted): its earliest follower runs
    instead, and the other followers follow that one."""
    async with tx.conn.execute(
        "SELECT id, type, attempts, max_attempts, priority FROM tasks INDEXED BY tasks_followers "
        "WHERE state = 8 AND cached_from = ? ORDER BY rowid LIMIT 1",
        (leader_id,),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return
    heir, type_name, attempts, max_attempts, priority = row
    revision = await tx.revision()
    await tx.conn.execute(
        "UPDATE tasks SET state = 2, cached = 0, cached_from = '', due_at = ?, claim_key = ?, "
        "updated_at = ?, revision = ? WHERE id = ?",
        (tx.now, claim_key_of(tx.now, priority), tx.now, revision, heir),
    )
    tx.counts.changed(
        Shape(type_name, FOLLOWING, attempts, max_attempts),
        Shape(type_name, 2, attempts, max_attempts),
    )
    await tx.conn.execute(
        "UPDATE tasks INDEXED BY tasks_followers SET cached_from = ?, updated_at = ?, "
        "revision = ? WHERE state = 8 AND cached_from = ?",
        (heir, tx.now, revision, leader_id),
    )
