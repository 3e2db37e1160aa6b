"""Retention against the real SQLite store: which finished tasks go, when, and what stays."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from typing import Any

import pytest

from scheduler_service.domain.model import (
    MICROS_PER_SECOND,
    AttemptOutcome,
    Micros,
    OnFailure,
    TaskFilter,
    TaskState,
)
from scheduler_service.store.sqlite import retention
from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore
from tests.integration.store.test_store_contract import spec
from tests.integration.store.test_store_rules import finish, made, take
from tests.support.clock import ManualClock

S = MICROS_PER_SECOND
SHORT: Mapping[TaskState, Micros] = {
    TaskState.SUCCEEDED: 10 * S,
    TaskState.FAILED: 100 * S,
    TaskState.CANCELLED: 10 * S,
}


async def ids_stored(store: SqliteTaskStore) -> set[str]:
    tasks, _ = await store.list_tasks(TaskFilter(), limit=1000, after_id=None, descending=False)
    return {task.id for task in tasks}


def rows_of(store: SqliteTaskStore, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    """Read the file directly (a fresh connection sees every commit)."""
    with sqlite3.connect(store.path) as conn:
        return conn.execute(sql, params).fetchall()


async def test_finished_tasks_go_by_state_and_age_while_unfinished_ones_stay(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    succeeded, failed, cancelled, running, queued = await made(
        store, *(spec(max_attempts=1) for _ in range(4)), spec(run_at=clock.now() + 10_000 * S)
    )
    leases = {lease.task_id: lease for lease in await take(store)}
    assert set(leases) == {succeeded.id, failed.id, cancelled.id, running.id}
    await finish(store, [leases[succeeded.id]])
    await finish(store, [leases[failed.id]], AttemptOutcome.FAILED, error="boom")
    await store.cancel_task(cancelled.id)

    clock.advance(5)
    assert await store.prune_finished(SHORT, 100) == 0  # nothing old enough yet
    clock.advance(10)
    assert await store.prune_finished(SHORT, 100) == 2
    assert await ids_stored(store) == {failed.id, running.id, queued.id}
    clock.advance(100)
    assert await store.prune_finished(SHORT, 100) == 1
    assert await ids_stored(store) == {running.id, queued.id}
    assert await store.get_task(succeeded.id) is None


async def test_states_left_out_are_kept_forever(store: SqliteTaskStore, clock: ManualClock) -> None:
    tasks = await made(store, spec(), spec())
    await finish(store, await take(store))
    clock.advance(10_000)
    assert await store.prune_finished({TaskState.FAILED: 1 * S}, 100) == 0
    assert await ids_stored(store) == {t.id for t in tasks}


async def test_a_task_created_long_ago_goes_by_when_it_finished(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    [task] = await made(store, spec(run_at=clock.now() + 100 * S))
    clock.advance(100)
    await finish(store, await take(store))
    clock.advance(5)
    assert await store.prune_finished(SHORT, 100) == 0  # created 105 s ago, finished 5 s ago
    clock.advance(6)
    assert await store.prune_finished(SHORT, 100) == 1
    assert await store.get_task(task.id) is None


async def test_batches_take_the_oldest_first_and_at_most_the_limit(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    older = await made(store, *(spec() for _ in range(15)))
    await finish(store, await take(store))
    clock.advance(1)
    newer = await made(store, *(spec() for _ in range(10)))
    await finish(store, await take(store))
    clock.advance(60)
    assert await store.prune_finished(SHORT, 10) == 10
    assert await ids_stored(store) == {t.id for t in older[10:] + newer}
    assert await store.prune_finished(SHORT, 10) == 10
    assert await ids_stored(store) == {t.id for t in newer[5:]}
    assert await store.prune_finished(SHORT, 10) == 5  # short: nothing is left
    assert await store.prune_finished(SHORT, 10) == 0


async def test_pruned_tasks_leave_no_attempts_labels_or_counts_and_read_as_deleted(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    tasks = await made(
        store,
        *(spec(type="foo" if i % 2 else "bar", labels={"team": f"t{i}"}) for i in range(8)),
    )
    leases = await take(store)
    await finish(store, leases[:3], AttemptOutcome.FAILED, error="again")  # retried: 2 attempts
    await finish(store, leases[3:])
    clock.advance(5)
    await finish(store, await take(store))
    kept = await made(store, spec(labels={"team": "kept"}))  # queued: stays
    revision = await store.revision()
    clock.advance(60)

    assert await store.prune_finished(SHORT, 100) == 8
    ids = [t.id for t in tasks]
    marks = ",".join("?" * len(ids))
    assert (
        rows_of(store, f"SELECT task_id FROM attempts WHERE task_id IN ({marks})", tuple(ids)) == []
    )
    assert rows_of(store, "SELECT task_id FROM task_labels") == [(kept[0].id,)]
    recount = rows_of(store, "SELECT type, state, count(*) FROM tasks GROUP BY 1, 2")
    counts = rows_of(store, "SELECT type, state, tasks FROM task_counts WHERE tasks != 0")
    assert sorted(counts) == sorted(recount) == [("foo", int(TaskState.PENDING), 1)]
    leftovers = rows_of(store, "SELECT retries, exhausted FROM task_counts WHERE tasks = 0")
    assert all(row == (0, 0) for row in leftovers)
    stats = await store.stats()
    assert sum(stats.totals.values()) == 1 and stats.retries == 0

    changes = await store.changes_since((revision, "~"), 100)
    assert {c.task_id for c in changes} == set(ids)
    assert all(c.task is None and c.client == "tester" for c in changes)
    assert {c.type for c in changes} == {"foo", "bar"}


async def test_a_failed_task_that_blocks_its_group_is_kept(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    blocking, waiting = await made(store, spec(group="g", max_attempts=1), spec(group="g"))
    skipping, after_skip = await made(
        store,
        spec(group="h", max_attempts=1, on_failure=OnFailure.SKIP),
        spec(group="h", run_at=clock.now() + 10_000 * S),
    )
    leases = await take(store)
    assert {x.task_id for x in leases} == {blocking.id, skipping.id}
    await finish(store, leases, AttemptOutcome.FAILED, error="boom")
    clock.advance(1000)

    assert await store.prune_finished(SHORT, 100) == 1  # the skipped failure only
    assert await ids_stored(store) == {blocking.id, waiting.id, after_skip.id}
    assert await take(store) == []  # the group still waits for the operator
    await store.delete_task(blocking.id)
    [lease] = await take(store)
    assert lease.task_id == waiting.id


async def test_a_finished_task_that_unfinished_tasks_follow_is_kept(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    [leader] = await made(store, spec(cache=True))
    [follower] = await made(store, spec(cache=True))
    assert (await store.get_task(follower.id)).state == TaskState.FOLLOWING  # type: ignore[union-attr]
    # The store never finishes a leader without its followers; make the case by hand to
    # prove retention would not strand them either.
    with sqlite3.connect(store.path) as conn:
        conn.execute(
            "UPDATE tasks SET state = 4, finished_at = ? WHERE id = ?", (clock.now(), leader.id)
        )
    clock.advance(1000)
    assert await store.prune_finished(SHORT, 100) == 0
    assert await ids_stored(store) == {leader.id, follower.id}


async def test_old_deletion_records_go_in_batches(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    old = await made(store, *(spec() for _ in range(5)))
    for task in old:
        await store.delete_task(task.id)
    clock.advance(100)
    [recent] = await made(store, spec())
    await store.delete_task(recent.id)
    clock.advance(50)

    assert await store.prune_tombstones(60 * S, 3) == 3
    assert await store.prune_tombstones(60 * S, 3) == 2
    assert await store.prune_tombstones(60 * S, 3) == 0
    assert rows_of(store, "SELECT task_id FROM deleted_tasks") == [(recent.id,)]
    changes = await store.changes_since((0, ""), 100)
    assert [c.task_id for c in changes if c.task is None] == [recent.id]


async def test_nothing_to_prune_writes_nothing(store: SqliteTaskStore, clock: ManualClock) -> None:
    await made(store, spec())
    revision = await store.revision()
    clock.advance(1000)
    assert await store.prune_finished(SHORT, 100) == 0
    assert await store.prune_finished({}, 100) == 0
    assert await store.prune_tombstones(1 * S, 100) == 0
    assert await store.revision() == revision


async def test_two_processes_pruning_at_once_share_the_work(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await made(store, *(spec() for _ in range(60)))
    await finish(store, await take(store))
    clock.advance(60)
    other = SqliteTaskStore(store.path, SqliteOptions(clock=clock))
    await other.open()
    try:

        async def drain(s: SqliteTaskStore) -> int:
            total = 0
            while (removed := await s.prune_finished(SHORT, 7)) > 0:
                total += removed
            return total

        first, second = await asyncio.gather(drain(store), drain(other))
    finally:
        await other.close()
    assert first + second == 60
    assert rows_of(store, "SELECT count(*) FROM tasks") == [(0,)]
    assert rows_of(store, "SELECT sum(tasks) FROM task_counts") == [(0,)]
    assert rows_of(store, "SELECT count(*) FROM deleted_tasks") == [(60,)]


async def test_a_batch_stops_at_its_time_budget_and_the_rest_go_next(
    store: SqliteTaskStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting reads a payload's overflow pages: large tasks make a batch slow, so a batch
    deletes chunk by chunk and commits what it removed once its time is up."""
    monkeypatch.setattr(retention, "DELETE_BUDGET_S", 0.0)  # every chunk is over budget
    big = spec(payload_json='{"big":"' + "x" * 50_000 + '"}')
    tasks = await made(store, *[big] * 40)
    await finish(store, await take(store))
    clock.advance(60)
    chunk = retention.FIRST_CHUNK
    removed = [await store.prune_finished(SHORT, 500) for _ in range(40 // chunk + 1)]
    assert removed == [chunk] * (40 // chunk) + [0]
    assert await ids_stored(store) == set()
    changes = await store.changes_since((0, ""), 100)
    assert {c.task_id for c in changes if c.task is None} == {t.id for t in tasks}
    assert rows_of(store, "SELECT sum(tasks) FROM task_counts") == [(0,)]
