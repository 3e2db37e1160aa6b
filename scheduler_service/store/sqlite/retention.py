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

import time
from collections.abc import Mapping, Sequence

from ...domain.ids import encode
from ...domain.model import Micros, TaskState
from .counts import Shape
from .rows import placeholders
from .writer import Tx

#: Ids start with 48 bits of milliseconds and end with 80 random bits.
_RANDOM_BITS = 80
#: One prune transaction deletes for at most this long, then commits what it removed.
DELETE_BUDGET_S = 0.02
#: Tasks read and deleted before the first look at the clock (1 MiB payloads: about
#: 10 ms); the chunks double while they take under an eighth of the budget.
FIRST_CHUNK = 4

_OLD_FINISHED = """
SELECT rowid, id, type, attempts, max_attempts, client FROM tasks INDEXED BY tasks_state
WHERE state = :state AND id > :after AND id < :id_bound AND finished_at < :cutoff
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
RETURNING revision
"""
# The change feed is complete only after the newest deletion record ever removed: a
# watcher resuming from before it would silently miss deletions (see history_floor).
_RAISE_HISTORY_FLOOR = """
INSERT INTO meta (key, value) VALUES ('history_floor', :revision)
ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
"""

PruneRequest = tuple[Mapping[TaskState, Micros], int]
#: rowid, id, type, attempts, max_attempts, client, and the state it was found in.
_Row = tuple[int, str, str, int, int, str, TaskState]


def id_bound(cutoff: Micros) -> str:
    """The smallest task id of the millisecond after ``cutoff``: every task created at or
    before ``cutoff`` has a smaller id."""
    return encode((cutoff // 1000 + 1) << _RANDOM_BITS)


async def prune_finished(tx: Tx, requests: Sequence[PruneRequest]) -> list[int]:
    """For each request (ages per finished state, limit): remove at most ``limit`` tasks
    that finished longer ago than their state's age, oldest first; answers how many."""
    return [await _prune_one(tx, ages, limit) for ages, limit in requests]


async def _prune_one(tx: Tx, ages: Mapping[TaskState, Micros], limit: int) -> int:
    """Find and delete old tasks a chunk at a time, until ``limit`` or DELETE_BUDGET_S.

    Reading a task's later columns (finished_at, grp, ...) and deleting its row both walk
    the overflow pages of its payload, so a batch's cost grows with its tasks' bytes: 500
    tasks of 1 KiB take about 5 ms, 500 of 100 KiB 40-110 ms, all of it on the event loop
    (the writer runs statements inline). The budget keeps one transaction short whatever
    the payloads; the chunks start small and double while they are cheap.
    """
    started = time.perf_counter()
    removed: list[_Row] = []
    size = FIRST_CHUNK
    for state, age in sorted(ages.items()):
        if not state.is_terminal or age <= 0:
            raise ValueError(f"cannot prune {state.name} tasks after {age} µs")
        cutoff = tx.now - age
        params: dict[str, object] = {"state": int(state), "cutoff": cutoff, "after": ""}
        params["id_bound"] = id_bound(cutoff)
        while len(removed) < limit:
            chunk_started = time.perf_counter()
            params["limit"] = wanted = min(size, limit - len(removed))
            async with tx.conn.execute(_OLD_FINISHED, params) as cursor:
                rows: list[_Row] = [(*row, state) for row in await cursor.fetchall()]
            if rows:
                await _delete(tx, rows)
                removed.extend(rows)
                params["after"] = rows[-1][1]
            now = time.perf_counter()
            if len(rows) < wanted or now - started > DELETE_BUDGET_S:
                break
            if now - chunk_started < DELETE_BUDGET_S / 8:  # small tasks: fewer statements
                size = min(size * 2, 256)
        if len(removed) >= limit or time.perf_counter() - started > DELETE_BUDGET_S:
            break
    if not removed:
        return 0
    revision = await tx.revision()
    for _, _, type_name, attempts, max_attempts, _, state in removed:
        tx.counts.removed(Shape(type_name, int(state), attempts, max_attempts))
    await tx.conn.executemany(
        "INSERT INTO deleted_tasks (revision, task_id, type, deleted_at, client) "
        "VALUES (?, ?, ?, ?, ?)",
        [(revision, task_id, type_name, tx.now, client)
         for _, task_id, type_name, _, _, client, _ in removed],
    )  # fmt: skip
    return len(removed)


async def _delete(tx: Tx, rows: list[_Row]) -> None:
    marks = placeholders(len(rows))
    ids = [row[1] for row in rows]
    await tx.conn.execute(f"DELETE FROM tasks WHERE rowid IN ({marks})", [r[0] for r in rows])
    await tx.conn.execute(f"DELETE FROM attempts WHERE task_id IN ({marks})", ids)
    await tx.conn.execute(f"DELETE FROM task_labels WHERE task_id IN ({marks})", ids)


async def prune_tombstones(tx: Tx, requests: Sequence[tuple[Micros, int]]) -> list[int]:
    """For each request (age, limit): remove at most ``limit`` of the oldest deletion
    records older than ``age``; answers how many."""
    answers = []
    for age, limit in requests:
        if age <= 0:
            raise ValueError(f"cannot prune deletion records after {age} µs")
        cursor = await tx.conn.execute(_OLD_TOMBSTONES, {"limit": limit, "cutoff": tx.now - age})
        removed = [row[0] for row in await cursor.fetchall()]
        if removed:
            await tx.conn.execute(_RAISE_HISTORY_FLOOR, {"revision": max(removed)})
        answers.append(len(removed))
    return answers
