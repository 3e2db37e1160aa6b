"""Leases and claims of the PostgreSQL store (issue 8), held to the SQLite store's contract.

The SQLite contract tests about claiming (order, aging, paused types), results and their
fencing, heartbeats, expiry, released sessions, type and key limits, groups and dispatch
rounds are imported below, so they run here unchanged against a PostgresTaskStore (pytest
collects imported test functions with this module's fixtures).

Time: the contract tests move a ManualClock to expire leases, and cannot move the database
server's clock, on which production lease deadlines are. So the ``store`` fixture sets
``lease_clock="store"``: the same SQL takes "now" for deadlines from the store's clock (its
wall clock, as the server's is). The tests defined here check the production setting,
``"server"``, on its own: deadlines follow the server's clock, not a scheduler's, and one
replica's reaper expires another's leases. Two contract tests are not imported, as they
test SQLite's monotonic lease clock and boot id, which PostgreSQL has no use for:
``test_a_wall_clock_jump_moves_no_lease_deadline`` (here deadlines are on the server's
wall clock; a scheduler host's clock jump moves none: see
``test_a_scheduler_clock_jump_moves_no_lease_deadline``) and
``test_leases_of_a_previous_boot_expire_at_start``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from scheduler_service.domain.model import (
    AttemptEnd,
    AttemptOutcome,
    ClaimRequest,
    ConcurrencyLimits,
    TaskState,
)
from scheduler_service.store.base import Commit
from scheduler_service.store.postgres.store import PostgresOptions, PostgresTaskStore
from tests.integration.store.test_store_clients import (  # noqa: F401 - run here
    test_a_cancelled_leader_hands_over_to_its_first_follower,
    test_followers_fail_with_their_leader,
    test_identical_creates_join_the_running_task,
    test_progress_is_stored_for_current_leases_only,
)
from tests.integration.store.test_store_contract import (  # noqa: F401 - run here
    TTL,
    claim,
    spec,
    test_a_claim_sent_before_a_create_still_leases_it_in_the_same_commit,
    test_a_returned_task_keeps_its_place_in_the_queue,
    test_a_task_and_its_attempts_are_read_together,
    test_a_task_is_leased_to_one_session_only,
    test_attempt_histories_of_many_tasks_in_one_read,
    test_attempt_past_its_timeout_is_reclaimed_even_with_heartbeats,
    test_cancel_running_task_fences_its_lease,
    test_change_feed_is_ordered_and_complete,
    test_claim_orders_by_priority_and_not_before_due,
    test_delete_removes_everything_and_leaves_a_tombstone,
    test_expired_lease_is_reclaimed_as_worker_lost,
    test_failures_back_off_then_fail_with_history,
    test_heartbeat_extends_and_names_stale_leases,
    test_non_retryable_failure_fails_at_once,
    test_paused_types_are_not_claimed,
    test_release_session_returns_its_leases,
    test_returned_attempt_is_not_counted,
    test_success_is_recorded_once_and_stale_results_are_refused,
    test_waiting_ages_a_low_priority_task_past_newer_high_ones,
    test_workers_are_listed_with_in_flight_counts,
)
from tests.integration.store.test_store_rules import (  # noqa: F401 - run here
    test_a_failed_task_blocks_its_group_until_retried_or_deleted,
    test_a_group_runs_one_task_at_a_time_in_creation_order,
    test_a_retried_task_waits_for_the_running_one,
    test_cancelling_the_active_task_releases_the_group,
    test_concurrency_key_limits_span_types,
    test_one_round_for_many_sessions_leaves_nothing_due_behind,
    test_skip_lets_the_group_move_on_after_a_failure,
    test_slow_rate_allows_one_start_per_interval,
    test_type_max_running_is_never_exceeded,
    test_type_rate_limit_uses_a_sliding_window,
)
from tests.support.clock import ManualClock
from tests.support.polling import eventually

# The server's "now" in microseconds, as the store computes lease deadlines.
SERVER_NOW = "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint"


@pytest.fixture
def clock() -> ManualClock:
    """Years away from the server's clock, so that a deadline taken from the wrong clock
    shows."""
    return ManualClock(start=1_500_000_000_000_000)


@pytest.fixture
async def store(postgres_url: str, clock: ManualClock) -> AsyncIterator[PostgresTaskStore]:
    """The PostgreSQL store on a fresh database; time, lease deadlines included, is the
    test's (as the SQLite fixture in conftest.py)."""
    store = PostgresTaskStore(postgres_url, PostgresOptions(clock=clock, lease_clock="store"))
    await store.open()
    await store.register_task_types(["foo", "bar"])
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def replicas(postgres_url: str, clock: ManualClock) -> AsyncIterator[list[PostgresTaskStore]]:
    """Two stores on one database, as two scheduler replicas would have, with production
    lease deadlines (the server's clock)."""
    stores = [PostgresTaskStore(postgres_url, PostgresOptions(clock=clock)) for _ in range(2)]
    await asyncio.gather(*(store.open() for store in stores))
    await stores[0].register_task_types(["foo", "bar"])
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_two_replicas_claiming_at_once_never_lease_one_task_twice(
    postgres_url: str, replicas: list[PostgresTaskStore]
) -> None:
    await replicas[0].create_tasks([spec() for _ in range(120)])
    outcomes = await asyncio.gather(
        *(replicas[i % 2].claim([claim(f"s{i}-{j}", limit=3) for j in range(3)]) for i in range(20))
    )
    leases = [lease for outcome in outcomes for per in outcome.leases for lease in per]
    task_ids = Counter(lease.task_id for lease in leases)
    assert task_ids and max(task_ids.values()) == 1, "a task was leased twice"
    assert len(leases) == 120  # 20 rounds x 3 sessions x 3 = 180 asked: every task leased
    rows = await _fetch(
        postgres_url,
        "SELECT t.id, t.lease_id, t.state, count(a.number) AS attempts FROM tasks t "
        "LEFT JOIN attempts a ON a.task_id = t.id GROUP BY t.id",
    )
    leased = {lease.task_id: lease.lease_id for lease in leases}
    assert {(r["id"], r["lease_id"], r["state"], r["attempts"]) for r in rows} == {
        (task_id, lease_id, int(TaskState.RUNNING), 1) for task_id, lease_id in leased.items()
    }


async def test_a_type_limit_holds_across_two_replicas(
    postgres_url: str, replicas: list[PostgresTaskStore]
) -> None:
    await replicas[0].create_tasks([spec() for _ in range(30)] + [spec(type="bar")] * 3)
    await replicas[1].set_task_type_limits("foo", ConcurrencyLimits(max_running=4))
    rounds = [
        replicas[i % 2].claim([claim(f"s{i}", types=("foo", "bar"), limit=5)]) for i in range(12)
    ]
    leases = [lease for outcome in await asyncio.gather(*rounds) for lease in outcome.leases[0]]
    assert Counter(lease.type for lease in leases) == {"foo": 4, "bar": 3}
    # The limit frees up by results reported to either replica, and holds again.
    foo = [lease for lease in leases if lease.type == "foo"]
    await replicas[1].end_attempts([AttemptEnd(foo[0].lease_id, AttemptOutcome.SUCCEEDED)])
    more = await asyncio.gather(*(replicas[i % 2].claim([claim(f"t{i}")]) for i in range(4)))
    assert sum(len(outcome.leases[0]) for outcome in more) == 1
    [running] = await _fetch(postgres_url, "SELECT count(*) FROM tasks WHERE state = 3")
    assert running[0] == 4 + 3


async def test_a_rate_limit_holds_across_two_replicas(replicas: list[PostgresTaskStore]) -> None:
    await replicas[0].create_tasks([spec() for _ in range(20)])
    await replicas[0].set_task_type_limits("foo", ConcurrencyLimits(max_per_second=5))
    outcomes = await asyncio.gather(
        *(replicas[i % 2].claim([claim(f"s{i}", limit=4)]) for i in range(8))
    )
    assert sum(len(outcome.leases[0]) for outcome in outcomes) == 5  # one window (ManualClock)
    assert any(outcome.retry_at is not None for outcome in outcomes)


async def test_lease_deadlines_are_on_the_servers_clock(
    postgres_url: str, replicas: list[PostgresTaskStore], clock: ManualClock
) -> None:
    """A scheduler's clock (here a ManualClock far from the server's) plays no part in a
    lease's deadlines: they are the server's time plus the TTL, and the timeout."""
    await replicas[0].create_tasks([spec(timeout=600_000_000)])
    [[lease]] = (await replicas[0].claim([claim()])).leases
    [row] = await _fetch(
        postgres_url,
        f"SELECT lease_expires_at - {SERVER_NOW} AS expires_in, "
        f"attempt_deadline - {SERVER_NOW} AS deadline_in FROM tasks",
    )
    assert TTL - 10_000_000 < row["expires_in"] <= TTL
    assert 600_000_000 - 10_000_000 < row["deadline_in"] <= 600_000_000
    await replicas[1].heartbeats([("s1", [lease.lease_id])], 3_600_000_000)
    [row] = await _fetch(
        postgres_url, f"SELECT lease_expires_at - {SERVER_NOW} AS expires_in FROM tasks"
    )
    assert 3_600_000_000 - 10_000_000 < row["expires_in"] <= 3_600_000_000


async def test_a_scheduler_clock_jump_moves_no_lease_deadline(
    replicas: list[PostgresTaskStore], clock: ManualClock
) -> None:
    await replicas[0].create_tasks([spec(timeout=60_000_000)])
    [[lease]] = (await replicas[0].claim([claim()])).leases
    clock.jump_wall(3600)  # a scheduler host's clock jumps an hour ahead
    assert await replicas[0].reclaim_expired() == []
    assert await replicas[1].reclaim_expired() == []
    clock.jump_wall(-7200)  # ...and two hours back
    assert await replicas[1].heartbeats([("s1", [lease.lease_id])], TTL) == [[]]
    assert await replicas[0].reclaim_expired() == []


async def test_one_replicas_reaper_expires_a_lease_granted_by_another(
    replicas: list[PostgresTaskStore],
) -> None:
    task = (await replicas[0].create_tasks([spec()]))[0][0]
    short = ClaimRequest("s1", "worker-s1", frozenset({"foo"}), 1, 300_000)  # 0.3 s TTL
    [[lease]] = (await replicas[0].claim([short])).leases
    assert await replicas[1].reclaim_expired() == []  # not yet (server time)
    [ended] = await eventually(replicas[1].reclaim_expired, message="the lease expired")
    assert (ended.lease_id, ended.outcome) == (lease.lease_id, AttemptOutcome.WORKER_LOST)
    stored = await replicas[0].get_task(task.id)
    assert stored is not None and stored.state == TaskState.PENDING and stored.lease_id == ""


async def test_kept_counts_match_a_recount_after_lease_operations(
    postgres_url: str, store: PostgresTaskStore, clock: ManualClock
) -> None:
    """Every leasing write keeps task_counts exact (the SQLite contract's recount test
    reads SQLite's connection, so it is restated here with PostgreSQL's)."""
    await store.create_tasks(
        [spec(type="foo" if i % 2 else "bar", max_attempts=2) for i in range(40)]
        + [spec(group="g") for _ in range(3)]
    )
    [leases] = (await store.claim([claim(types=("foo", "bar"), limit=30)])).leases
    outcomes = [AttemptOutcome.SUCCEEDED, AttemptOutcome.FAILED, AttemptOutcome.RETURNED]
    ends = [AttemptEnd(x.lease_id, outcomes[i % 3], "{}") for i, x in enumerate(leases[:24])]
    ends.append(AttemptEnd(leases[24].lease_id, AttemptOutcome.FAILED, retryable=False))
    await store.end_attempts(ends)
    clock.advance(10)
    [again] = (await store.claim([claim(types=("foo", "bar"), limit=40)])).leases
    await store.end_attempts([AttemptEnd(x.lease_id, AttemptOutcome.FAILED) for x in again[:6]])
    await store.heartbeats([("s1", [x.lease_id for x in again[6:9]])], TTL)
    await store.release_session("s1", returned=True)
    await store.claim([claim("s2", types=("foo", "bar"), limit=5)])
    clock.advance(100)
    assert await store.reclaim_expired()
    recount = {
        (r[0], r[1]): (r[2], r[3], r[4])
        for r in await _fetch(
            postgres_url,
            "SELECT type, state, count(*), sum(GREATEST(attempts - 1, 0))::bigint, "
            "count(*) FILTER (WHERE state = 5 AND attempts >= max_attempts) "
            "FROM tasks GROUP BY 1, 2",
        )
    }
    kept = {
        (r[0], r[1]): (r[2], r[3], r[4])
        for r in await _fetch(
            postgres_url,
            "SELECT type, state, tasks, retries, exhausted FROM task_counts "
            "WHERE tasks != 0 OR retries != 0 OR exhausted != 0",
        )
    }
    assert kept == recount


async def test_next_due_at_is_the_earliest_queued_task_not_yet_due(
    store: PostgresTaskStore, clock: ManualClock
) -> None:
    assert await store.next_due_at() is None
    await store.create_tasks([spec()])  # due now: not in the future
    assert await store.next_due_at() is None
    later, sooner = (
        t
        for t, _ in await store.create_tasks(
            [spec(run_at=clock.now() + 9_000_000), spec(run_at=clock.now() + 4_000_000)]
        )
    )
    assert await store.next_due_at() == sooner.due_at
    await store.delete_task(sooner.id)
    assert await store.next_due_at() == later.due_at


async def test_a_claim_skips_task_rows_locked_outside_the_store(
    postgres_url: str, replicas: list[PostgresTaskStore]
) -> None:
    """Candidates are taken FOR UPDATE SKIP LOCKED: a row some other session holds (an
    operator's statement, say) is passed over, and the claim neither waits for it nor
    leases it."""
    locked, free = (t for t, _ in await replicas[0].create_tasks([spec(), spec()]))
    conn = await asyncpg.connect(postgres_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT id FROM tasks WHERE id = $1 FOR UPDATE", locked.id)
            outcome = await asyncio.wait_for(replicas[1].claim([claim()]), timeout=10)
            assert [lease.task_id for lease in outcome.leases[0]] == [free.id]
        [[lease]] = (await replicas[1].claim([claim()])).leases  # released: now it is
        assert lease.task_id == locked.id
    finally:
        await conn.close()


async def test_a_reaper_with_nothing_to_end_writes_nothing(
    replicas: list[PostgresTaskStore],
) -> None:
    """Every replica's reaper looks each second; a write would take a revision and wake
    every replica, so it only reads until a lease has expired."""
    await replicas[0].create_tasks([spec()])
    await replicas[0].claim([claim()])
    commits: list[Commit] = []
    replicas[1].add_commit_listener(commits.append)
    before = await replicas[1].revision()
    assert await replicas[1].reclaim_expired() == []
    assert await replicas[1].revision() == before and commits == []
