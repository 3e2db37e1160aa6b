"""The contract of the TaskStore interface, run against the real SQLite store.

A second backend must pass these same cases.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scheduler_service.domain.errors import FailedPrecondition, NotFound
from scheduler_service.domain.model import (
    AttemptEnd,
    AttemptOutcome,
    Backoff,
    ClaimRequest,
    Lease,
    TaskFilter,
    TaskRecord,
    TaskSpec,
    TaskState,
    WorkerRecord,
)
from scheduler_service.store.base import Commit
from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore
from tests.support.clock import ManualClock

TTL = 30_000_000


def spec(**changes: Any) -> TaskSpec:
    base = TaskSpec(
        type="foo",
        payload_json='{"n":1}',
        run_at=None,
        priority=0,
        max_attempts=3,
        backoff=Backoff(initial=1_000_000, multiplier=2.0, maximum=60_000_000, jitter=0.0),
        timeout=600_000_000,
        group="",
        idempotency_key="",
        cache=False,
        labels={},
        client="tester",
    )
    return replace(base, **changes)


async def existing_task(store: SqliteTaskStore, task_id: str) -> TaskRecord:
    task = await store.get_task(task_id)
    assert task is not None, f"task {task_id} not found"
    return task


async def take(store: SqliteTaskStore, *requests: ClaimRequest) -> list[list[Lease]]:
    """Claim and answer only the leases per request."""
    return (await store.claim(list(requests))).leases


def claim(session: str = "s1", types: tuple[str, ...] = ("foo",), limit: int = 10) -> ClaimRequest:
    return ClaimRequest(session, f"worker-{session}", frozenset(types), limit, TTL)


async def test_created_tasks_read_back_with_every_field(store: SqliteTaskStore) -> None:
    [(task, created)] = await store.create_tasks(
        [spec(labels={"team": "a"}, group="g1", priority=7)]
    )
    assert created
    stored = await store.get_task(task.id)
    assert stored == task
    assert stored.state == TaskState.PENDING and stored.labels == {"team": "a"}
    assert json.loads(stored.payload_json) == {"n": 1}


async def test_idempotency_key_returns_the_first_task_per_client(store: SqliteTaskStore) -> None:
    first = await store.create_tasks([spec(idempotency_key="k1")])
    again = await store.create_tasks([spec(idempotency_key="k1", payload_json='{"n":2}')])
    other_client = await store.create_tasks([spec(idempotency_key="k1", client="other")])
    assert again[0] == (first[0][0], False)
    assert other_client[0][1] is True and other_client[0][0].id != first[0][0].id


async def test_concurrent_creates_with_one_key_make_one_task(store: SqliteTaskStore) -> None:
    results = await asyncio.gather(
        *(store.create_tasks([spec(idempotency_key="race")]) for _ in range(20))
    )
    ids = {result[0][0].id for result in results}
    assert len(ids) == 1
    assert sum(result[0][1] for result in results) == 1


async def test_claim_orders_by_priority_and_not_before_due(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    low = (await store.create_tasks([spec(priority=0)]))[0][0]
    high = (await store.create_tasks([spec(priority=10)]))[0][0]
    later = (await store.create_tasks([spec(run_at=clock.now() + 5_000_000, priority=100)]))[0][0]
    [leases] = await take(store, claim(limit=10))
    assert [lease.task_id for lease in leases] == [high.id, low.id]
    assert (await existing_task(store, later.id)).visible_state(clock.now()) == TaskState.SCHEDULED
    assert await store.next_due_at() == later.due_at
    clock.advance(5)
    [leases] = await take(store, claim(limit=10))
    assert [lease.task_id for lease in leases] == [later.id]


async def test_waiting_ages_a_low_priority_task_past_newer_high_ones(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    old_low = (await store.create_tasks([spec(priority=0)]))[0][0]
    clock.advance(11)  # default aging: one point per second of waiting
    (await store.create_tasks([spec(priority=10)]))[0][0]
    [leases] = await take(store, claim(limit=1))
    assert leases[0].task_id == old_low.id


async def test_a_task_is_leased_to_one_session_only(store: SqliteTaskStore) -> None:
    await store.create_tasks([spec() for _ in range(5)])
    results = await asyncio.gather(*(take(store, claim(f"s{i}", limit=5)) for i in range(4)))
    leased = [lease.task_id for result in results for lease in result[0]]
    assert len(leased) == 5 and len(set(leased)) == 5


async def test_paused_types_are_not_claimed(store: SqliteTaskStore) -> None:
    await store.create_tasks([spec(type="bar")])
    await store.set_task_type_paused("bar", True)
    assert await take(store, claim(types=("bar",))) == [[]]
    await store.set_task_type_paused("bar", False)
    assert len((await take(store, claim(types=("bar",))))[0]) == 1
    with pytest.raises(NotFound):
        await store.set_task_type_paused("nope", True)


async def test_success_is_recorded_once_and_stale_results_are_refused(
    store: SqliteTaskStore,
) -> None:
    task = (await store.create_tasks([spec()]))[0][0]
    [[lease]] = await take(store, claim())
    [ok] = await store.end_attempts(
        [AttemptEnd(lease.lease_id, AttemptOutcome.SUCCEEDED, '{"r":1}')]
    )
    assert ok.accepted and ok.new_state == TaskState.SUCCEEDED
    [again] = await store.end_attempts(
        [AttemptEnd(lease.lease_id, AttemptOutcome.FAILED, error="late")]
    )
    assert not again.accepted
    stored = await existing_task(store, task.id)
    assert stored.state == TaskState.SUCCEEDED and stored.result_json == '{"r":1}'
    assert stored.error == "" and stored.finished_at is not None


async def test_failures_back_off_then_fail_with_history(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    task = (await store.create_tasks([spec(max_attempts=3)]))[0][0]
    delays = []
    for attempt in (1, 2, 3):
        [[lease]] = await take(store, claim())
        assert lease.attempt == attempt
        [_ended] = await store.end_attempts(
            [AttemptEnd(lease.lease_id, AttemptOutcome.FAILED, error=f"boom {attempt}")]
        )
        stored = await existing_task(store, task.id)
        if attempt < 3:
            assert stored.visible_state(clock.now()) == TaskState.SCHEDULED
            delays.append(stored.due_at - clock.now())
            assert await take(store, claim()) == [[]]  # not before the backoff ends
            clock.advance((stored.due_at - clock.now()) / 1e6)
    assert delays == [1_000_000, 2_000_000]  # jitter 0 in this spec
    assert stored.state == TaskState.FAILED and stored.error == "boom 3"
    history = await store.get_attempts(task.id)
    assert [(a.number, a.outcome, a.error) for a in history] == [
        (1, AttemptOutcome.FAILED, "boom 1"),
        (2, AttemptOutcome.FAILED, "boom 2"),
        (3, AttemptOutcome.FAILED, "boom 3"),
    ]
    stats = await store.stats()
    assert stats.over_retry_limit == 1 and stats.retries == 2


async def test_non_retryable_failure_fails_at_once(store: SqliteTaskStore) -> None:
    task = (await store.create_tasks([spec(max_attempts=5)]))[0][0]
    [[lease]] = await take(store, claim())
    await store.end_attempts(
        [AttemptEnd(lease.lease_id, AttemptOutcome.FAILED, error="bad input", retryable=False)]
    )
    assert (await existing_task(store, task.id)).state == TaskState.FAILED


async def test_returned_attempt_is_not_counted(store: SqliteTaskStore) -> None:
    task = (await store.create_tasks([spec(max_attempts=1)]))[0][0]
    [[lease]] = await take(store, claim())
    await store.end_attempts([AttemptEnd(lease.lease_id, AttemptOutcome.RETURNED)])
    stored = await existing_task(store, task.id)
    assert stored.state == TaskState.PENDING and stored.attempts == 0
    [[again]] = await take(store, claim())
    assert again.attempt == 1 and again.lease_id != lease.lease_id


async def test_heartbeat_extends_and_names_stale_leases(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await store.create_tasks([spec(timeout=600_000_000)])
    [[lease]] = await take(store, claim())
    clock.advance(20)
    assert await store.heartbeats([("s1", [lease.lease_id, "gone"])], TTL) == [["gone"]]
    clock.advance(20)  # 40 s after the claim, 20 s after the heartbeat: still alive
    assert await store.reclaim_expired() == []
    # Several beats in one write: each answered for its own session.
    assert await store.heartbeats(
        [("other-session", [lease.lease_id]), ("s1", [lease.lease_id]), ("s1", [])], TTL
    ) == [[lease.lease_id], [], []]


async def test_expired_lease_is_reclaimed_as_worker_lost(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    task = (await store.create_tasks([spec()]))[0][0]
    [[lease]] = await take(store, claim())
    clock.advance(31)
    [ended] = await store.reclaim_expired()
    assert ended.accepted and ended.outcome == AttemptOutcome.WORKER_LOST
    assert ended.session_id == "s1"
    [late] = await store.end_attempts([AttemptEnd(lease.lease_id, AttemptOutcome.SUCCEEDED)])
    assert not late.accepted
    stored = await existing_task(store, task.id)
    assert stored.attempts == 1 and stored.state == TaskState.PENDING


async def test_attempt_past_its_timeout_is_reclaimed_even_with_heartbeats(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await store.create_tasks([spec(timeout=5_000_000)])
    [[lease]] = await take(store, claim())
    clock.advance(3)
    await store.heartbeats([("s1", [lease.lease_id])], TTL)
    clock.advance(3)
    [ended] = await store.reclaim_expired()
    assert ended.outcome == AttemptOutcome.TIMED_OUT


async def test_release_session_returns_its_leases(store: SqliteTaskStore) -> None:
    await store.create_tasks([spec(), spec()])
    await take(store, claim("s1", limit=1), claim("s2", limit=1))
    ended = await store.release_session("s1")
    assert len(ended) == 1 and ended[0].outcome == AttemptOutcome.WORKER_LOST
    running = await store.list_tasks(
        TaskFilter(states=frozenset({TaskState.RUNNING})), limit=10, after_id=None, descending=True
    )
    assert len(running[0]) == 1


async def test_cancel_running_task_fences_its_lease(store: SqliteTaskStore) -> None:
    task = (await store.create_tasks([spec()]))[0][0]
    [[lease]] = await take(store, claim())
    cancelled, lease_ref = await store.cancel_task(task.id)
    assert cancelled.state == TaskState.CANCELLED
    assert lease_ref is not None and lease_ref.lease_id == lease.lease_id
    [late] = await store.end_attempts([AttemptEnd(lease.lease_id, AttemptOutcome.SUCCEEDED)])
    assert not late.accepted
    with pytest.raises(FailedPrecondition):
        await store.cancel_task(task.id)
    retried = await store.retry_task(task.id)
    assert retried.state == TaskState.PENDING and retried.attempts == 0
    with pytest.raises(FailedPrecondition):
        await store.retry_task(task.id)
    with pytest.raises(NotFound):
        await store.retry_task("01ARZ3NDEKTSV4RRFFQ69G5FAV")


async def test_a_task_and_its_attempts_are_read_together(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    fresh = (await store.create_tasks([spec(type="bar", labels={"a": "b"})]))[0][0]
    assert await store.get_task_with_attempts(fresh.id) == (fresh, [])
    tried = (await store.create_tasks([spec(max_attempts=3)]))[0][0]
    [[first]] = await take(store, claim(limit=1))
    await store.end_attempts([AttemptEnd(first.lease_id, AttemptOutcome.FAILED)])
    clock.advance(3600)  # past the retry's backoff
    [[second]] = await take(store, claim(limit=1))
    assert (first.task_id, second.task_id, second.attempt) == (tried.id, tried.id, 2)
    task, history = await store.get_task_with_attempts(tried.id) or (None, [])
    assert task == await store.get_task(tried.id)
    assert history == await store.get_attempts(tried.id)
    assert [a.number for a in history] == [1, 2]
    assert await store.get_task_with_attempts("01ARZ3NDEKTSV4RRFFQ69G5FAV") is None


async def test_delete_removes_everything_and_leaves_a_tombstone(store: SqliteTaskStore) -> None:
    task = (await store.create_tasks([spec(labels={"a": "b"})]))[0][0]
    [[_lease]] = await take(store, claim())
    deleted = await store.delete_task(task.id)
    assert deleted is not None and deleted[1] is not None
    assert await store.get_task(task.id) is None
    assert await store.get_attempts(task.id) == []
    assert await store.delete_task(task.id) is None
    changes = await store.changes_since((0, ""), 100)
    assert changes[-1].task_id == task.id and changes[-1].task is None


async def test_delete_by_filter_takes_only_matching(store: SqliteTaskStore) -> None:
    await store.create_tasks([spec(type="bar") for _ in range(3)] + [spec()])
    count, _ = await store.delete_tasks(TaskFilter(types=frozenset({"bar"})))
    assert count == 3
    remaining, _ = await store.list_tasks(TaskFilter(), limit=10, after_id=None, descending=True)
    assert [t.type for t in remaining] == ["foo"]


async def test_list_filters_and_pages_are_stable(store: SqliteTaskStore) -> None:
    created = await store.create_tasks(
        [spec(labels={"env": "prod" if i % 2 else "dev"}, group=f"g{i % 3}") for i in range(9)]
    )
    made = [t for t, _ in created]
    prod, _ = await store.list_tasks(
        TaskFilter(labels={"env": "prod"}), limit=100, after_id=None, descending=True
    )
    assert [t.id for t in prod] == [t.id for t in reversed(made) if t.labels["env"] == "prod"]
    seen: list[str] = []
    after: str | None = None
    while True:
        page, _ = await store.list_tasks(TaskFilter(), limit=2, after_id=after, descending=False)
        if not page:
            break
        seen.extend(t.id for t in page)
        after = page[-1].id
    assert seen == [t.id for t in made]
    grouped, _ = await store.list_tasks(
        TaskFilter(group="g1", client="tester"), limit=100, after_id=None, descending=True
    )
    assert len(grouped) == 3


async def test_state_filter_splits_queued_by_due_time(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await store.create_tasks([spec(), spec(run_at=clock.now() + 60_000_000)])
    scheduled, _ = await store.list_tasks(
        TaskFilter(states=frozenset({TaskState.SCHEDULED})),
        limit=10,
        after_id=None,
        descending=True,
    )
    pending, _ = await store.list_tasks(
        TaskFilter(states=frozenset({TaskState.PENDING})),
        limit=10,
        after_id=None,
        descending=True,
    )
    assert len(scheduled) == 1 and len(pending) == 1
    assert scheduled[0].id != pending[0].id


async def test_change_feed_is_ordered_and_complete(store: SqliteTaskStore) -> None:
    start = await store.revision()
    a = (await store.create_tasks([spec()]))[0][0]
    b = (await store.create_tasks([spec()]))[0][0]
    [[lease]] = await take(store, claim(limit=1))
    changes = await store.changes_since((start, "~"), 100)
    revisions = [c.revision for c in changes]
    assert revisions == sorted(revisions)
    assert {c.task_id for c in changes} == {a.id, b.id}
    by_id = {c.task_id: c for c in changes}
    latest = by_id[lease.task_id].task
    assert latest is not None and latest.state == TaskState.RUNNING  # latest state, coalesced
    # Paging by (revision, id) neither repeats nor skips.
    first = await store.changes_since((start, "~"), 1)
    rest = await store.changes_since((first[0].revision, first[0].task_id), 100)
    assert [c.task_id for c in first + rest] == [c.task_id for c in changes]


async def test_workers_are_listed_with_in_flight_counts(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    record = WorkerRecord(
        "s1", "w1", "sched", "host", 1, "0.1", ("foo",), 4, clock.now(), clock.now()
    )
    await store.add_worker(record)
    await store.create_tasks([spec(), spec()])
    await take(store, claim("s1", limit=2))
    [worker] = await store.list_workers(clock.now() - 1)
    assert worker.in_flight == 2 and worker.slots == 4
    clock.advance(10)
    assert await store.list_workers(clock.now() - 1) == []  # no heartbeat since
    await store.heartbeats([("s1", [])], TTL)
    assert len(await store.list_workers(clock.now() - 1)) == 1


async def test_group_commit_puts_concurrent_creates_in_few_transactions(
    store: SqliteTaskStore,
) -> None:
    before = await store.revision()
    await asyncio.gather(*(store.create_tasks([spec()]) for _ in range(200)))
    transactions = await store.revision() - before
    assert transactions < 50, f"200 concurrent creates took {transactions} transactions"


async def test_a_claim_sent_before_a_create_still_leases_it_in_the_same_commit(
    store: SqliteTaskStore,
) -> None:
    """Claims run last in their transaction: the dispatcher's claim, submitted beside a
    create (or a worker's results), sees them, and the commit says a claim ran in it."""
    commits: list[Commit] = []
    store.add_commit_listener(commits.append)
    claimed, created = await asyncio.gather(store.claim([claim()]), store.create_tasks([spec()]))
    [(task, _)] = created
    [[lease]] = claimed.leases
    assert lease.task_id == task.id
    assert len(commits) == 1 and commits[0].claimed, commits
    await store.create_tasks([spec()])
    assert not commits[-1].claimed, "a create alone says no claim saw it"


async def test_reopening_migrates_nothing_and_keeps_data(tmp_path: Path) -> None:
    clock = ManualClock()
    path = str(tmp_path / "again.db")
    first = SqliteTaskStore(path, SqliteOptions(clock=clock))
    await first.open()
    await first.register_task_types(["foo"])
    task = (await first.create_tasks([spec()]))[0][0]
    await first.close()
    second = SqliteTaskStore(path, SqliteOptions(clock=clock))
    await second.open()
    try:
        assert await second.get_task(task.id) == task
        assert await second.task_type_names() == {"foo"}
    finally:
        await second.close()


async def test_kept_counts_match_a_recount_after_mixed_operations(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    """Every write path keeps task_counts exact (the stats must never drift)."""
    made = [t for t, _ in await store.create_tasks(
        [spec(type="foo" if i % 2 else "bar", max_attempts=2) for i in range(40)]
    )]  # fmt: skip
    await store.create_tasks([spec(idempotency_key="dup"), spec(idempotency_key="dup")])
    leases = (await take(store, claim(types=("foo", "bar"), limit=30)))[0]
    outcomes = [AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.RETURNED]
    ends = [
        AttemptEnd(lease.lease_id, outcomes[i % 3], "{}") for i, lease in enumerate(leases[:24])
    ]
    ends.append(AttemptEnd(leases[24].lease_id, AttemptOutcome.FAILED, retryable=False))
    await store.end_attempts(ends)
    clock.advance(10)
    again = (await take(store, claim(types=("foo", "bar"), limit=40)))[0]
    await store.end_attempts([AttemptEnd(x.lease_id, AttemptOutcome.FAILED) for x in again[:6]])
    await store.cancel_task(made[-1].id)
    await store.cancel_task(made[-2].id)
    await store.retry_task(made[-1].id)  # cancelled -> queued
    await store.retry_task(leases[24].task_id)  # failed (not retryable) -> queued
    await store.delete_task(made[7].id)
    await store.delete_tasks(
        TaskFilter(types=frozenset({"bar"}), states=frozenset({TaskState.SUCCEEDED}))
    )
    await store.release_session("s1")
    clock.advance(100)
    await store.reclaim_expired()

    conn = store._reader
    assert conn is not None
    async with conn.execute(
        "SELECT type, state, count(*), sum(max(attempts - 1, 0)), "
        "sum(state = 5 AND attempts >= max_attempts) FROM tasks GROUP BY 1, 2"
    ) as cursor:
        recount = {(r[0], r[1]): (r[2], r[3], r[4]) for r in await cursor.fetchall()}
    async with conn.execute(
        "SELECT type, state, tasks, retries, exhausted FROM task_counts WHERE tasks != 0 "
        "OR retries != 0 OR exhausted != 0"
    ) as cursor:
        kept = {(r[0], r[1]): (r[2], r[3], r[4]) for r in await cursor.fetchall()}
    assert kept == recount
    stats = await store.stats()
    assert sum(stats.totals.values()) == sum(v[0] for v in recount.values())
    assert stats.over_retry_limit == sum(v[2] for v in recount.values())


async def test_attempt_histories_of_many_tasks_in_one_read(store: SqliteTaskStore) -> None:
    made = [t for t, _ in await store.create_tasks([spec(), spec(), spec()])]
    [leases] = await take(store, claim(limit=2))
    await store.end_attempts([AttemptEnd(x.lease_id, AttemptOutcome.FAILED) for x in leases])
    histories = await store.get_attempts_of([t.id for t in made])
    assert sorted(len(h) for h in histories.values()) == [0, 1, 1]
    for task_id, history in histories.items():
        assert history == await store.get_attempts(task_id)


async def test_a_wall_clock_jump_moves_no_lease_deadline(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await store.create_tasks([spec(timeout=60_000_000)])
    [[lease]] = await take(store, claim())
    clock.jump_wall(3600)  # someone sets the clock an hour ahead
    assert await store.reclaim_expired() == []
    clock.jump_wall(-7200)  # ...and two hours back
    assert await store.heartbeats([("s1", [lease.lease_id])], TTL) == [[]]
    clock.advance(31)  # real time passes without a heartbeat: now it expires
    [ended] = await store.reclaim_expired()
    assert ended.lease_id == lease.lease_id


async def test_leases_of_a_previous_boot_expire_at_start(tmp_path: Path) -> None:
    clock = ManualClock()
    path = str(tmp_path / "boot.db")
    before = SqliteTaskStore(path, SqliteOptions(clock=clock, boot_id="boot-1"))
    await before.open()
    await before.register_task_types(["foo"])
    await before.create_tasks([spec()])
    await before.claim([claim()])
    await before.close()
    clock.mono = 1_000  # the monotonic clock restarts with the host
    after = SqliteTaskStore(path, SqliteOptions(clock=clock, boot_id="boot-2"))
    await after.open()
    try:
        [ended] = await after.reclaim_expired()
        assert ended.accepted and ended.outcome == AttemptOutcome.WORKER_LOST
    finally:
        await after.close()
    same = SqliteTaskStore(path, SqliteOptions(clock=clock, boot_id="boot-2"))
    await same.open()  # the same boot again: nothing to expire
    try:
        await same.claim([claim()])
        assert await same.reclaim_expired() == []
    finally:
        await same.close()


async def test_a_returned_task_keeps_its_place_in_the_queue(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    first = (await store.create_tasks([spec()]))[0][0]
    [[lease]] = await take(store, claim(limit=1))
    clock.advance(5)
    await store.create_tasks([spec() for _ in range(3)])  # due later than the first
    await store.end_attempts([AttemptEnd(lease.lease_id, AttemptOutcome.RETURNED)])
    [[again]] = await take(store, claim(limit=1))
    assert again.task_id == first.id
