"""The tasks part of the PostgreSQL store (issue 8), held to the SQLite store's contract.

The SQLite contract tests that exercise creating, reading, listing, deleting, cancelling,
retrying and pruning tasks are imported below, so they run here unchanged against a
PostgresTaskStore (pytest collects imported test functions with this module's fixtures).
Tests defined here with a contract test's name are its port, where the original opens a
SQLite file or reads it directly (idempotency retention, pruned tasks, a followed task
kept, old deletion records); the others are PostgreSQL's own: several replicas sharing one
database, one snapshot per page, batches by COPY. Not run here: the SQLite store's time
budget per prune batch (``test_a_batch_stops_at_its_time_budget_and_the_rest_go_next``):
PostgreSQL deletes on the server, not on the event loop, so a batch has no budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from scheduler_service.domain.errors import FailedPrecondition, NotFound
from scheduler_service.domain.model import (
    MICROS_PER_SECOND,
    AttemptOutcome,
    ConcurrencyLimits,
    TaskFilter,
    TaskState,
)
from scheduler_service.store.postgres.store import PostgresOptions, PostgresTaskStore
from tests.integration.store.test_store_clients import (  # noqa: F401 - run here
    test_cached_create_reuses_a_succeeded_result,
    test_deletions_in_the_change_feed_carry_the_client,
    test_run_now_makes_a_scheduled_task_due,
    test_the_cache_is_per_client,
)
from tests.integration.store.test_store_contract import (  # noqa: F401 - run here
    spec,
    test_concurrent_creates_with_one_key_make_one_task,
    test_created_tasks_read_back_with_every_field,
    test_delete_by_filter_takes_only_matching,
    test_group_commit_puts_concurrent_creates_in_few_transactions,
    test_idempotency_key_returns_the_first_task_per_client,
    test_list_filters_and_pages_are_stable,
    test_state_filter_splits_queued_by_due_time,
)
from tests.integration.store.test_store_retention import (  # noqa: F401 - run here
    SHORT,
    ids_stored,
    test_a_failed_task_that_blocks_its_group_is_kept,
    test_a_task_created_long_ago_goes_by_when_it_finished,
    test_batches_take_the_oldest_first_and_at_most_the_limit,
    test_finished_tasks_go_by_state_and_age_while_unfinished_ones_stay,
    test_nothing_to_prune_writes_nothing,
    test_states_left_out_are_kept_forever,
)
from tests.integration.store.test_store_rules import finish, made, take
from tests.support.clock import ManualClock

S = MICROS_PER_SECOND
NO_SUCH_TASK = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(postgres_url: str, clock: ManualClock) -> AsyncIterator[PostgresTaskStore]:
    """The PostgreSQL store on a fresh database; time, lease deadlines included, is the
    test's (as the SQLite fixture in conftest.py; see test_postgres_leases.py)."""
    store = PostgresTaskStore(postgres_url, PostgresOptions(clock=clock, lease_clock="store"))
    await store.open()
    await store.register_task_types(["foo", "bar"])
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def replicas(postgres_url: str, clock: ManualClock) -> AsyncIterator[list[PostgresTaskStore]]:
    """Three stores on one database, as three scheduler replicas would have."""
    stores = [PostgresTaskStore(postgres_url, PostgresOptions(clock=clock)) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    await stores[0].register_task_types(["foo", "bar"])
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_replicas_creating_with_one_key_at_once_make_one_task(
    replicas: list[PostgresTaskStore],
) -> None:
    results = await asyncio.gather(
        *(
            replicas[i % len(replicas)].create_tasks([spec(idempotency_key="race")])
            for i in range(30)
        )
    )
    ids = {result[0][0].id for result in results}
    assert len(ids) == 1
    assert sum(result[0][1] for result in results) == 1
    tasks, _ = await replicas[0].list_tasks(
        TaskFilter(), limit=100, after_id=None, descending=False
    )
    assert [t.id for t in tasks] == list(ids)


async def test_replicas_creating_one_cached_task_at_once_run_it_once(
    replicas: list[PostgresTaskStore],
) -> None:
    results = await asyncio.gather(
        *(replicas[i % len(replicas)].create_tasks([spec(cache=True)]) for i in range(12))
    )
    tasks = [result[0][0] for result in results]
    leaders = [t for t in tasks if t.state == TaskState.PENDING]
    assert len(leaders) == 1
    followers = [t for t in tasks if t.state != TaskState.PENDING]
    assert {(t.cached, t.cached_from) for t in followers} == {(True, leaders[0].id)}


async def test_replicas_creating_in_one_group_at_once_activate_one_task(
    replicas: list[PostgresTaskStore],
) -> None:
    await asyncio.gather(
        *(replicas[i % len(replicas)].create_tasks([spec(group="g")]) for i in range(12))
    )
    pending, _ = await replicas[1].list_tasks(
        TaskFilter(group="g"), limit=100, after_id=None, descending=False
    )
    assert len(pending) == 12
    states = sorted(t.state for t in pending)
    assert states == [TaskState.PENDING] + [TaskState.WAITING] * 11


async def rows_of(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the database directly, on a connection of its own."""
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *params)]
    finally:
        await conn.close()


async def test_idempotency_keys_expire_after_the_retention(
    postgres_url: str, clock: ManualClock
) -> None:
    store = PostgresTaskStore(
        postgres_url, PostgresOptions(clock=clock, idempotency_retention=10 * S)
    )
    await store.open()
    try:
        await store.register_task_types(["foo"])
        [(first, _)] = await store.create_tasks([spec(idempotency_key="k")])
        clock.advance(9)
        [(again, created)] = await store.create_tasks([spec(idempotency_key="k")])
        assert again.id == first.id and not created
        clock.advance(2)
        [(fresh, created)] = await store.create_tasks([spec(idempotency_key="k")])
        assert created and fresh.id != first.id
    finally:
        await store.close()


async def test_cancel_retry_and_run_now_without_a_lease(
    store: PostgresTaskStore, clock: ManualClock
) -> None:
    [now_task, later] = await made(store, spec(), spec(run_at=clock.now() + 3600 * S))
    ran = await store.run_task(later.id)
    assert ran.due_at == clock.now() and ran.revision > later.revision
    assert await store.run_task(now_task.id) == now_task  # already due: unchanged
    cancelled, lease = await store.cancel_task(now_task.id)
    assert cancelled.state == TaskState.CANCELLED and lease is None
    assert cancelled.finished_at == clock.now() and cancelled.error == "cancelled"
    with pytest.raises(FailedPrecondition):
        await store.cancel_task(now_task.id)
    with pytest.raises(FailedPrecondition):
        await store.run_task(now_task.id)
    with pytest.raises(FailedPrecondition):
        await store.retry_task(later.id)  # not finished
    clock.advance(5)
    retried = await store.retry_task(now_task.id)
    assert (retried.state, retried.attempts, retried.finished_at) == (TaskState.PENDING, 0, None)
    assert retried.due_at == clock.now()
    for call in (store.cancel_task, store.retry_task, store.run_task):
        with pytest.raises(NotFound):
            await call(NO_SUCH_TASK)
    assert await store.get_task(now_task.id) == retried


async def test_a_cancelled_or_deleted_leader_hands_over_to_its_first_follower(
    store: PostgresTaskStore,
) -> None:
    [leader] = await made(store, spec(cache=True))
    [first, second] = await made(store, spec(cache=True), spec(cache=True))
    assert (first.state, first.cached_from) == (TaskState.FOLLOWING, leader.id)
    await store.cancel_task(leader.id)
    heir = await store.get_task(first.id)
    other = await store.get_task(second.id)
    assert heir is not None and heir.state == TaskState.PENDING and not heir.cached
    assert other is not None and other.cached_from == first.id
    # Deleting the new leader hands over again.
    await store.delete_task(first.id)
    last = await store.get_task(second.id)
    assert last is not None and last.state == TaskState.PENDING and not last.cached


async def test_cancelling_or_deleting_the_active_task_releases_the_group(
    store: PostgresTaskStore,
) -> None:
    first, second, third = await made(store, *(spec(group="g") for _ in range(3)))
    assert [t.state for t in (first, second, third)] == [
        TaskState.PENDING,
        TaskState.WAITING,
        TaskState.WAITING,
    ]
    await store.cancel_task(first.id)
    assert (await store.get_task(second.id)).state == TaskState.PENDING  # type: ignore[union-attr]
    await store.delete_task(second.id)
    assert (await store.get_task(third.id)).state == TaskState.PENDING  # type: ignore[union-attr]
    # A retried task waits behind the group's active one.
    retried = await store.retry_task(first.id)
    assert retried.state == TaskState.WAITING


async def test_list_pages_with_attempts_and_change_feed_with_deletions(
    store: PostgresTaskStore,
) -> None:
    start = await store.revision()
    a, b, c = await made(store, spec(), spec(type="bar"), spec())
    await store.cancel_task(b.id)
    await store.delete_task(c.id)
    tasks, attempts, revision = await store.list_tasks_with_attempts(
        TaskFilter(), limit=10, after_id=None, descending=False
    )
    assert [t.id for t in tasks] == [a.id, b.id]
    assert attempts == {a.id: [], b.id: []} == await store.get_attempts_of([a.id, b.id])
    assert revision == await store.revision()
    assert tasks[0].payload_json == a.payload_json  # FULL view
    basic, _ = await store.list_tasks(TaskFilter(), limit=10, after_id=None, descending=True)
    assert [t.id for t in basic] == [b.id, a.id] and basic[0].payload_json == ""
    cancelled, _ = await store.list_tasks(
        TaskFilter(states=frozenset({TaskState.CANCELLED}), types=frozenset({"bar"})),
        limit=10,
        after_id=None,
        descending=True,
    )
    assert [t.id for t in cancelled] == [b.id]
    changes = await store.changes_since((start, "~"), 100)
    assert [(ch.task_id, ch.task is None) for ch in changes] == [
        (a.id, False),
        (b.id, False),
        (c.id, True),
    ]
    assert [ch.revision for ch in changes] == sorted(ch.revision for ch in changes)
    first = await store.changes_since((start, "~"), 1)
    rest = await store.changes_since((first[0].revision, first[0].task_id), 100)
    assert [ch.task_id for ch in first + rest] == [ch.task_id for ch in changes]


async def test_pruning_removes_old_finished_tasks_and_leaves_tombstones(
    store: PostgresTaskStore, clock: ManualClock, postgres_url: str
) -> None:
    old = await made(store, *(spec(labels={"a": "b"}) for _ in range(5)))
    for task in old:
        await store.cancel_task(task.id)
    clock.advance(100)
    [recent, unfinished] = await made(store, spec(), spec())
    await store.cancel_task(recent.id)
    clock.advance(5)
    assert await store.prune_finished(SHORT, 3) == 3
    assert await store.prune_finished(SHORT, 3) == 2
    assert await store.prune_finished(SHORT, 3) == 0
    tasks, _ = await store.list_tasks(TaskFilter(), limit=100, after_id=None, descending=False)
    assert {t.id for t in tasks} == {recent.id, unfinished.id}
    changes = await store.changes_since((0, ""), 100)
    assert {ch.task_id for ch in changes if ch.task is None} == {t.id for t in old}
    assert await rows_of(postgres_url, "SELECT count(*) FROM task_labels") == [(0,)]
    counts = await rows_of(
        postgres_url, "SELECT state, tasks FROM task_counts WHERE tasks != 0 ORDER BY state"
    )
    assert counts == [(int(TaskState.PENDING), 1), (int(TaskState.CANCELLED), 1)]


async def test_a_finished_task_that_unfinished_tasks_follow_is_kept(
    store: PostgresTaskStore, clock: ManualClock, postgres_url: str
) -> None:
    [leader] = await made(store, spec(cache=True))
    [follower] = await made(store, spec(cache=True))
    # The store never finishes a leader without its followers; make the case by hand.
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(
            "UPDATE tasks SET state = 4, finished_at = $1 WHERE id = $2", clock.now(), leader.id
        )
    finally:
        await conn.close()
    clock.advance(1000)
    assert await store.prune_finished(SHORT, 100) == 0
    tasks, _ = await store.list_tasks(TaskFilter(), limit=100, after_id=None, descending=False)
    assert {t.id for t in tasks} == {leader.id, follower.id}


async def test_old_deletion_records_go_in_batches_and_raise_the_history_floor(
    store: PostgresTaskStore, clock: ManualClock, postgres_url: str
) -> None:
    old = await made(store, *(spec() for _ in range(5)))
    for task in old:
        await store.delete_task(task.id)
    newest_pruned = await store.revision()
    clock.advance(100)
    [recent] = await made(store, spec())
    await store.delete_task(recent.id)
    clock.advance(50)
    assert await store.history_floor() == 0
    assert await store.prune_tombstones(60 * S, 3) == 3
    assert await store.prune_tombstones(60 * S, 3) == 2
    assert await store.prune_tombstones(60 * S, 3) == 0
    assert await rows_of(postgres_url, "SELECT task_id FROM deleted_tasks") == [(recent.id,)]
    assert await store.history_floor() == newest_pruned
    changes = await store.changes_since((0, ""), 100)
    assert [ch.task_id for ch in changes if ch.task is None] == [recent.id]


async def test_kept_counts_match_a_recount_after_task_operations(
    store: PostgresTaskStore, clock: ManualClock, postgres_url: str
) -> None:
    made_tasks = await made(
        store,
        *(spec(group="g") for _ in range(3)),
        *(spec(cache=True) for _ in range(3)),
        *(spec(type="bar", run_at=clock.now() + 10 * S) for _ in range(3)),
    )
    await store.cancel_task(made_tasks[0].id)  # promotes the group's next
    await store.cancel_task(made_tasks[3].id)  # the cache leader hands over
    await store.retry_task(made_tasks[0].id)
    await store.delete_task(made_tasks[1].id)
    await store.delete_tasks(TaskFilter(types=frozenset({"bar"}), client="tester"))
    await store.cancel_task(made_tasks[4].id)
    clock.advance(100)
    await store.prune_finished(SHORT, 100)
    kept = await rows_of(
        postgres_url,
        "SELECT type, state, tasks, retries, exhausted FROM task_counts WHERE tasks != 0 "
        "ORDER BY type, state",
    )
    recount = await rows_of(
        postgres_url,
        "SELECT type, state, count(*), 0::bigint, 0::bigint FROM tasks GROUP BY type, state "
        "ORDER BY type, state",
    )
    assert kept == recount and kept


async def test_pruned_tasks_leave_no_attempts_labels_or_counts_and_read_as_deleted(
    store: PostgresTaskStore, clock: ManualClock, postgres_url: str
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
    attempts = "SELECT task_id FROM attempts WHERE task_id = ANY($1)"
    assert await rows_of(postgres_url, attempts, ids) == []
    assert await rows_of(postgres_url, "SELECT task_id FROM task_labels") == [(kept[0].id,)]
    recount = await rows_of(
        postgres_url, "SELECT type, state, count(*) FROM tasks GROUP BY 1, 2 ORDER BY 1, 2"
    )
    counts = await rows_of(
        postgres_url, "SELECT type, state, tasks FROM task_counts WHERE tasks != 0 ORDER BY 1, 2"
    )
    assert counts == recount == [("foo", int(TaskState.PENDING), 1)]
    leftovers = await rows_of(
        postgres_url, "SELECT retries, exhausted FROM task_counts WHERE tasks = 0"
    )
    assert leftovers and all(row == (0, 0) for row in leftovers)
    changes = await store.changes_since((revision, "~"), 100)
    assert {c.task_id for c in changes} == set(ids)
    assert all(c.task is None and c.client == "tester" for c in changes)
    assert {c.type for c in changes} == {"foo", "bar"}


async def test_replicas_pruning_at_once_share_the_work(
    replicas: list[PostgresTaskStore], clock: ManualClock, postgres_url: str
) -> None:
    tasks = await made(replicas[0], *(spec() for _ in range(60)))
    for task in tasks:
        await replicas[1].cancel_task(task.id)
    clock.advance(60)

    async def drain(store: PostgresTaskStore) -> int:
        total = 0
        while (removed := await store.prune_finished(SHORT, 7)) > 0:
            total += removed
        return total

    removed = await asyncio.gather(*(drain(store) for store in replicas))
    assert sum(removed) == 60
    assert await ids_stored(replicas[2]) == set()  # type: ignore[arg-type]
    assert await rows_of(postgres_url, "SELECT count(*) FROM deleted_tasks") == [(60,)]
    assert await rows_of(postgres_url, "SELECT sum(tasks)::bigint FROM task_counts") == [(0,)]


async def test_a_large_batch_round_trips_every_field(
    store: PostgresTaskStore, postgres_url: str
) -> None:
    """Batches of many tasks go in by COPY, single ones by INSERT: both store the same."""
    limits = ConcurrencyLimits(max_running=2, max_per_second=0.5)
    specs = [
        spec(
            labels={"team": f"t{i % 3}", "n": str(i)},
            priority=i,
            concurrency_key="acme" if i % 2 else "",
            key_limits=limits if i % 2 else None,
            trace_context='{"traceparent":"00-x"}' if i % 5 == 0 else "",
            cache=i % 4 == 0,
            payload_json='{"same":true}' if i % 4 == 0 else f'{{"n":{i}}}',
        )
        for i in range(40)
    ]
    [single] = await made(store, spec(labels={"team": "t0"}, trace_context='{"t":1}'))
    batch = await made(store, *specs)
    for task in (single, *batch):
        assert await store.get_task(task.id) == task
    # The first cached create of the batch leads; the identical ones follow it.
    cached = [t for t in batch if t.cache]
    assert cached[0].state == TaskState.PENDING and not cached[0].cached
    assert {(t.state, t.cached_from) for t in cached[1:]} == {(TaskState.FOLLOWING, cached[0].id)}
    team0, _ = await store.list_tasks(
        TaskFilter(labels={"team": "t0"}), limit=100, after_id=None, descending=False
    )
    assert [t.id for t in team0] == [single.id] + [t.id for i, t in enumerate(batch) if i % 3 == 0]
    traced = await rows_of(
        postgres_url, "SELECT id, trace_context FROM tasks WHERE trace_context != '' ORDER BY id"
    )
    assert traced == [(single.id, '{"t":1}')] + [
        (t.id, '{"traceparent":"00-x"}') for i, t in enumerate(batch) if i % 5 == 0
    ]
    keys = await rows_of(
        postgres_url, "SELECT key, max_running, max_per_second FROM concurrency_keys"
    )
    assert keys == [("acme", 2, 0.5)]
    labels = await rows_of(postgres_url, "SELECT count(*) FROM task_labels")
    assert labels == [(1 + 2 * 40,)]


async def test_a_page_and_its_revision_come_from_one_snapshot(
    replicas: list[PostgresTaskStore],
) -> None:
    """While another replica creates, every page holds exactly the tasks committed up to
    the revision it answers (a watcher resumes from that revision and misses nothing)."""
    created: list[tuple[str, int]] = []
    done = asyncio.Event()

    async def create() -> None:
        while not done.is_set():
            for task in await made(replicas[0], spec(), spec()):
                created.append((task.id, task.revision))

    async def listings() -> list[tuple[set[str], int]]:
        pages = []
        for _ in range(40):
            page, revision = await replicas[1].list_tasks(
                TaskFilter(), limit=10_000, after_id=None, descending=False
            )
            pages.append(({t.id for t in page}, revision))
            await asyncio.sleep(0.005)
        done.set()
        return pages

    _, pages = await asyncio.gather(create(), listings())
    assert len({revision for _, revision in pages}) > 5, "the creates did not interleave"
    for ids, revision in pages:
        assert ids == {task_id for task_id, made_at in created if made_at <= revision}
