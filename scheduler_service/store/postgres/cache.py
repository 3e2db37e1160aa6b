"""The result cache with single flight on PostgreSQL (see the SQLite store's ``cache.py``
for the rules: copy a fresh identical result, follow an identical unfinished task, or
lead). The cache key is the same hash (``cache_key``), so both stores agree on it.

"Earliest" and "oldest" are the lowest ``seq`` (insertion order, SQLite's rowid).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from ...domain.model import Micros, TaskState
from ..sqlite.cache import cache_key, cache_key_of
from .writer import PgTx

__all__ = ["CacheHits", "cache_key", "cache_key_of", "find_hits", "finish_followers",
           "hand_over"]  # fmt: skip

FOLLOWING = int(TaskState.FOLLOWING)


@dataclass(frozen=True)
class CacheHits:
    """What the stored tasks offer a batch of cached creates, read in two statements
    (one per cached create took five times as long as on SQLite: a round trip each)."""

    #: Per cache key, the newest identical task that succeeded by running (not itself a
    #: copy): its id, result and finish time.
    results: dict[str, tuple[str, str, Micros]]
    #: Per cache key, the oldest identical task that has not finished (queued, waiting or
    #: running): the one new identical creates follow.
    leaders: dict[str, str]

    def result(self, key: str, max_age: Micros | None, now: Micros) -> tuple[str, str] | None:
        """The result a create may copy, if the newest one is recent enough for it."""
        found = self.results.get(key)
        if found is None or (max_age is not None and found[2] < now - max_age):
            return None
        return found[0], found[1]


async def find_hits(tx: PgTx, keys: Collection[str]) -> CacheHits:
    if not keys:
        return CacheHits({}, {})
    wanted = sorted(keys)
    done = await tx.conn.fetch(
        "SELECT DISTINCT ON (cache_key) cache_key, id, result, finished_at FROM tasks "
        "WHERE cache = 1 AND state = 4 AND cached = 0 AND cache_key = ANY($1::text[]) "
        "ORDER BY cache_key, finished_at DESC",
        wanted,
    )
    live = await tx.conn.fetch(
        "SELECT DISTINCT ON (cache_key) cache_key, id FROM tasks "
        "WHERE cache = 1 AND state IN (2, 3, 7) AND cache_key = ANY($1::text[]) "
        "ORDER BY cache_key, seq",
        wanted,
    )
    return CacheHits(
        results={
            row["cache_key"]: (row["id"], row["result"] or "{}", row["finished_at"]) for row in done
        },
        leaders={row["cache_key"]: row["id"] for row in live},
    )


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
