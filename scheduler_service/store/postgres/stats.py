"""GetStats on PostgreSQL: the port of the SQLite store's ``stats()``.

The counts per type and state come from the kept ``task_counts`` (the store's ``_counts``);
the rest is read here. PostgreSQL's ``sum()`` of a BIGINT is NUMERIC (a Python Decimal),
hence the casts back to BIGINT.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from ...domain.model import MICROS_PER_SECOND, Micros, Stats, TaskState

#: How many of the most retried tasks, and of the latest finished attempts' lateness.
MOST_RETRIED = 20
LATENESS_SAMPLE = 1000


async def read_stats(
    conn: asyncpg.Connection | asyncpg.Pool,
    by_type: Mapping[str, Mapping[TaskState, int]],
    now: Micros,
) -> Stats:
    totals: dict[TaskState, int] = {}
    for counts in by_type.values():
        for state, count in counts.items():
            totals[state] = totals.get(state, 0) + count
    kept = await conn.fetchrow(
        "SELECT coalesce(sum(retries), 0)::bigint, coalesce(sum(exhausted), 0)::bigint "
        "FROM task_counts"
    )
    assert kept is not None  # an aggregate answers one row
    most = await conn.fetch(
        "SELECT id, type, attempts, max_attempts FROM tasks "
        "WHERE attempts > 1 ORDER BY attempts DESC, id DESC LIMIT $1",
        MOST_RETRIED,
    )
    finished = await conn.fetchval(
        "SELECT count(*) FROM tasks WHERE finished_at > $1", now - 60 * MICROS_PER_SECOND
    )
    # Handler start minus due time of the latest finished attempts (the worker reported
    # when it started them).
    lateness = await conn.fetch(
        "SELECT started_at - due_at FROM attempts "
        "WHERE leased_at IS NOT NULL AND finished_at IS NOT NULL AND due_at IS NOT NULL "
        "ORDER BY leased_at DESC LIMIT $1",
        LATENESS_SAMPLE,
    )
    return Stats(
        totals=totals,
        by_type=by_type,
        retries=int(kept[0]),
        over_retry_limit=int(kept[1]),
        most_retried=tuple((row[0], row[1], int(row[2]), int(row[3])) for row in most),
        finished_last_minute=int(finished),
        lateness=tuple(sorted(row[0] for row in lateness)),
    )
