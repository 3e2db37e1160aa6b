"""Sequential groups: at most one active task per group, the rest wait in order.

A group's *active* task is queued, running, or FAILED with ``on_failure = block``; every
other unfinished task of the group is stored as WAITING (7) and is not in the claim index.
Whenever a group may have lost its active task (a task of it succeeded, was skipped,
cancelled, deleted or retried, or new tasks joined it), :func:`promote_next` makes the
earliest waiting task active. Running inside the write transaction, this holds across
every scheduler process sharing the database.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...domain.model import Micros, TaskState
from .counts import Shape
from .writer import Tx

WAITING = int(TaskState.WAITING)

_HAS_ACTIVE = """
SELECT 1 FROM tasks INDEXED BY tasks_group_active
WHERE grp = ? AND grp != '' AND (state IN (2, 3) OR (state = 5 AND on_failure = 1))
LIMIT 1
"""

_PROMOTE = """
UPDATE tasks SET state = 2, due_at = max(due_at, :now),
    claim_key = max(due_at, :now) - priority * :aging, updated_at = :now, revision = :revision
WHERE rowid = (
    SELECT rowid FROM tasks INDEXED BY tasks_group_waiting
    WHERE grp = :grp AND state = 7 ORDER BY rowid LIMIT 1
)
RETURNING id, type, attempts, max_attempts, due_at
"""


async def promote_next(tx: Tx, groups: Iterable[str], aging: Micros) -> dict[str, Micros]:
    """Activate the earliest waiting task of each group that has no active task.

    Answers the promoted task ids with their new due time.
    """
    promoted: dict[str, Micros] = {}
    for group in sorted({g for g in groups if g}):
        async with tx.conn.execute(_HAS_ACTIVE, (group,)) as cursor:
            if await cursor.fetchone() is not None:
                continue
        params = {"now": tx.now, "aging": aging, "revision": await tx.revision(), "grp": group}
        async with tx.conn.execute(_PROMOTE, params) as cursor:
            row = await cursor.fetchone()
        if row is None:
            continue
        task_id, type_name, attempts, max_attempts, due_at = row
        tx.counts.changed(
            Shape(type_name, WAITING, attempts, max_attempts),
            Shape(type_name, 2, attempts, max_attempts),
        )
        promoted[task_id] = due_at
    return promoted
