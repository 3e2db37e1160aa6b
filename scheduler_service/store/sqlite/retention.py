"""Write handlers for retention: remove old finished tasks and old deletion records.

A pruned task goes the way a deleted one does: its row, attempts and labels go, the
per-type counts drop, and a tombstone tells watchers (the change feed shows it as a
deletion). Tasks something live still needs are kept whatever their age:

- a FAILED task of a group with ``on_failure = block`` is its group's active task: while
  it is there the group's later tasks wait (removing it would let them run), so only
  RetryTask or DeleteTask ends it;
- a task that unfinished cached tasks follow (``cached_from``); the store never leaves a
  finished task with followers, but should one exist, its followers still wait for it.

The oldest tasks go first, per state, through the ``tasks_state`` index (state, id), with
ids bounded by the cutoff: ids start with their creation time, and a task created after
the cutoff cannot have finished before it. The ``tasks_finished`` index (finished_at)
would do for one state, but every prune batch would walk past the tasks of the other
states that are still kept (30 days of FAILED tasks while SUCCEEDED ones go after 7);
here a batch walks past only the tasks of its own state that were created before the
cutoff and finished after it. (An id made after the wall clock stepped back carries the
later millisecond it had reached; such a task goes late by that step, never early.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...domain.ids import encode
from ...domain.model import Micros, TaskState
from .counts import Shape
from .rows import placeholders
from .writer import Tx

#: Ids start with 48 bits of milliseconds and end with 80 random bits.
_RANDOM_BITS = 80

_OLD_FINISHED = """
SELECT rowid, id, type, attempts, max_attempts, client FROM tasks INDEXED BY tasks_state
WHERE state = :state AND id < :id_bound AND finished_at < :cutoff
  AND NOT (state = 5 AND on_failure = 1 AND grp != '')
  AND NOT EXISTS (
      SELECT 1 FROM tasks AS follower INDEXED BY tasks_followers
      WHERE follower.state = 8 AND follower.cached_from = tasks.id)
ORDER BY id LIMIT :limit
"""

# The oldest tombstones by revision (revisions grow with time), of which those past the
# cutoff go: the read stops after ``limit`` rows instead of scanning every newer one.
_OLD_TOMBSTONES = """
DELETE FROM deleted_tasks WHERE (revision, task_id) IN (
    SELECT revision, task_id FROM (
        SELECT revision, task_id, deleted_at FROM deleted_tasks
        ORDER BY revision, task_id LIMIT :limit)
    WHERE deleted_at < :cutoff)
"""

PruneRequest = tuple[Mapping[TaskState, Micros], int]


def id_bound(cutoff: Micros) -> str:
    """The smallest task id of the millisecond after ``cutoff``: every task created at or
    before ``cutoff`` has a smaller id."""
    return encode((cutoff // 1000 + 1) << _RANDOM_BITS)


async def prune_finished(tx: Tx, requests: Sequence[PruneRequest]) -> list[int]:
    """For each request (ages per finished state, limit): remove at most ``limit`` tasks
    that finished longer ago than their state's age, oldest first; answers how many."""
    return [await _prune_one(tx, ages, limit) for ages, limit in requests]


async def _prune_one(tx: Tx, ages: Mapping[TaskState, Micros], limit: int) -> int:
    rows: list[tuple[int, str, str, int, int, str, TaskState]] = []
    for state, age in sorted(ages.items()):
        if len(rows) >= limit:
            break
        if not state.is_terminal or age <= 0:
            raise ValueError(f"cannot prune {state.name} tasks after {age} µs")
        cutoff = tx.now - age
        params = {
            "state": int(state),
            "id_bound": id_bound(cutoff),
            "cutoff": cutoff,
            "limit": limit - len(rows),
        }
        async with tx.conn.execute(_OLD_FINISHED, params) as cursor:
            rows.extend((*row, state) for row in await cursor.fetchall())
    if not rows:
        return 0
    revision = await tx.revision()
    for _, _, type_name, attempts, max_attempts, _, state in rows:
        tx.counts.removed(Shape(type_name, int(state), attempts, max_attempts))
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        marks = placeholders(len(chunk))
        ids = [row[1] for row in chunk]
        await tx.conn.execute(f"DELETE FROM tasks WHERE rowid IN ({marks})", [r[0] for r in chunk])
        await tx.conn.execute(f"DELETE FROM attempts WHERE task_id IN ({marks})", ids)
        await tx.conn.execute(f"DELETE FROM task_labels WHERE task_id IN ({marks})", ids)
    await tx.conn.executemany(
        "INSERT INTO deleted_tasks (revision, task_id, type, deleted_at, client) "
        "VALUES (?, ?, ?, ?, ?)",
        [(revision, task_id, type_name, tx.now, client)
         for _, task_id, type_name, _, _, client, _ in rows],
    )  # fmt: skip
    return len(rows)


async def prune_tombstones(tx: Tx, requests: Sequence[tuple[Micros, int]]) -> list[int]:
    """For each request (age, limit): remove at most ``limit`` of the oldest deletion
    records older than ``age``; answers how many."""
    answers = []
    for age, limit in requests:
        if age <= 0:
            raise ValueError(f"cannot prune deletion records after {age} µs")
        cursor = await tx.conn.execute(_OLD_TOMBSTONES, {"limit": limit, "cutoff": tx.now - age})
        answers.append(max(cursor.rowcount, 0))
    return answers
