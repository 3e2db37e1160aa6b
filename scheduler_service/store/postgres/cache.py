"""The result cache with single flight on PostgreSQL (see the SQLite store's ``cache.py``
for the rules: copy a fresh identical result, follow an identical unfinished task, or
lead). The cache key is the same hash (``cache_key``), so both stores agree on it.

"Earliest" and "oldest" are the lowest ``seq`` (insertion order, SQLite's rowid).
"""

from __future__ import annotations

from collections.abc import Callable

from ...domain.model import Micros, TaskState
from ..sqlite.cache import cache_key, cache_key_of
from .writer import PgTx

__all__ = ["cache_key", "cache_key_of", "find_leader", "find_result", "finish_followers",
           "hand_over"]  # fmt: skip

FOLLOWING = int(TaskState.FOLLOWING)


async def find_result(tx: PgTx, key: str, max_age: Micros | None) -> tuple[str, str] | None:
    """The newest identical task that succeeded by running (not itself a copy)."""
    oldest = tx.now - max_age if max_age is not None else 0
    row = await tx.conn.fetchrow(
        "SELECT id, result FROM tasks "
        "WHERE cache = 1 AND state = 4 AND cached = 0 AND cache_key = $1 AND finished_at >= $2 "
        "ORDER BY finished_at DESC LIMIT 1",
        key,
        oldest,
    )
    return (row["id"], row["result"] or "{}") if row else None


async def find_leader(tx: PgTx, key: str) -> str | None:
    """The oldest identical task that has not finished (queued, waiting or running)."""
    leader: str | None = await tx.conn.fetchval(
        "SELECT id FROM tasks WHERE cache = 1 AND state IN (2, 3, 7) AND cache_key = $1 "
        "ORDER BY seq LIMIT 1",
        key,
    )
    return leader


async def finish_followers(
    tx: PgTx, leader_id: str, state: TaskState, result_json: str | None, error: str
) -> None:
    """The leader finished: its followers finish the same way, now."""
    follower_error = f"joined task {leader_id}, which failed: {error}" if error else ""
    rows = await tx.conn.fetch(
        """UPDATE tasks
           SET state = $1, result = $2, error = $3, finished_at = $4, updated_at = $4,
               revision = $5
           WHERE state = 8 AND cached_from = $6
           RETURNING type, attempts, max_attempts""",
        int(state), result_json, follower_error, tx.now, tx.revision, leader_id,
    )  # fmt: skip
    for row in rows:
        tx.counts.add(row["type"], FOLLOWING, row["attempts"], row["max_attempts"], -1)
        tx.counts.add(row["type"], int(state), row["attempts"], row["max_attempts"], 1)


async def hand_over(
    tx: PgTx, leader_id: str, claim_key_of: Callable[[Micros, int], Micros]
) -> None:
    """The leader went away unfinished (cancelled, deleted): its earliest follower runs
    instead, and the other followers follow that one."""
    row = await tx.conn.fetchrow(
        "SELECT id, type, attempts, max_attempts, priority FROM tasks "
        "WHERE state = 8 AND cached_from = $1 ORDER BY seq LIMIT 1",
        leader_id,
    )
    if row is None:
        return
    heir = row["id"]
    await tx.conn.execute(
        "UPDATE tasks SET state = 2, cached = 0, cached_from = '', due_at = $1, claim_key = $2, "
        "updated_at = $1, revision = $3 WHERE id = $4",
        tx.now, claim_key_of(tx.now, row["priority"]), tx.revision, heir,
    )  # fmt: skip
    tx.counts.add(row["type"], FOLLOWING, row["attempts"], row["max_attempts"], -1)
    tx.counts.add(row["type"], 2, row["attempts"], row["max_attempts"], 1)
    await tx.conn.execute(
        "UPDATE tasks SET cached_from = $1, updated_at = $2, revision = $3 "
        "WHERE state = 8 AND cached_from = $4",
        heir, tx.now, tx.revision, leader_id,
    )  # fmt: skip
