"""Sequential groups on PostgreSQL: at most one active task per group, the rest wait in
order (see the SQLite store's ``groups.py`` for the rules).

Every write transaction holds the revision row lock, so no two transactions of any
replicas promote in one group at once: the check and the promotion cannot interleave.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...domain.model import Micros, TaskState
from .writer import PgTx

WAITING = int(TaskState.WAITING)

_HAS_ACTIVE = """
SELECT 1 FROM tasks
WHERE grp = $1 AND grp != '' AND (state IN (2, 3) OR (state = 5 AND on_failure = 1))
LIMIT 1
"""

# The earliest waiting task is the lowest seq (insertion order, as SQLite's rowid); it is
# updated by id, the primary key (seq has no index of its own: by seq, a scan).
_PROMOTE = """
UPDATE tasks SET state = 2, due_at = GREATEST(due_at, $1::bigint),
    claim_key = GREATEST(due_at, $1::bigint) - priority * $2::bigint, updated_at = $1,
    revision = $3
WHERE id = (SELECT id FROM tasks WHERE grp = $4 AND state = 7 ORDER BY seq LIMIT 1)
RETURNING id, type, attempts, max_attempts, due_at
"""


async def promote_next(tx: PgTx, groups: Iterable[str], aging: Micros) -> dict[str, Micros]:
    """Activate the earliest waiting task of each group that has no active task.

    Answers the promoted task ids with their new due time.
    """
    promoted: dict[str, Micros] = {}
    for group in sorted({g for g in groups if g}):
        if await tx.conn.fetchval(_HAS_ACTIVE, group) is not None:
            continue
        row = await tx.conn.fetchrow(_PROMOTE, tx.now, aging, tx.revision, group)
        if row is None:
            continue
        tx.counts.add(row["type"], WAITING, row["attempts"], row["max_attempts"], -1)
        tx.counts.add(row["type"], 2, row["attempts"], row["max_attempts"], 1)
        promoted[row["id"]] = row["due_at"]
    return promoted
