"""The PostgreSQL store's foundation on a real server (issue 8, work in progress).

What is ported so far runs here: migrations (replicas starting together apply each once),
the group-commit writer (revisions in commit order across replicas, one caller's bad
argument failing only that caller), commit notifications between replicas, task types
with counts and limits, and the workers table. As more of the store is ported, the SQLite
contract tests get parametrised over both backends instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from scheduler_service.domain.errors import NotFound
from scheduler_service.domain.model import ConcurrencyLimits, WorkerRecord
from scheduler_service.store.base import Commit
from scheduler_service.store.postgres.connection import migration_files
from scheduler_service.store.postgres.store import PostgresOptions, PostgresTaskStore
from tests.integration.store.test_store_contract import claim, spec
from tests.support.clock import ManualClock
from tests.support.polling import eventually


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[list[PostgresTaskStore]]:
    """Two stores on one database, as two scheduler replicas would have; opened together."""
    clock = ManualClock()
    stores = [PostgresTaskStore(postgres_url, PostgresOptions(clock=clock)) for _ in range(2)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_replicas_opening_together_apply_each_migration_once(
    postgres_url: str, replicas: list[PostgresTaskStore]
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        applied = [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await conn.close()
    assert sorted(applied) == [name for name, _ in migration_files()]
    assert {"tasks", "attempts", "task_types", "workers", "task_counts", "meta"} <= tables
    # A third replica, later, finds nothing to do and keeps the data.
    await replicas[0].register_task_types(["foo"])
    later = PostgresTaskStore(postgres_url)
    await later.open()
    try:
        assert await later.task_type_names() == {"foo"}
    finally:
        await later.close()


async def test_writes_of_two_replicas_take_distinct_revisions_in_commit_order(
    replicas: list[PostgresTaskStore],
) -> None:
    seen: list[list[int]] = [[], []]
    for index, store in enumerate(replicas):
        store.add_commit_listener(lambda commit, i=index: seen[i].append(commit.revision))
    await replicas[0].register_task_types(["foo"])
    created = await asyncio.gather(*(replicas[i % 2].create_tasks([spec()]) for i in range(40)))
    revisions = seen[0] + seen[1]
    assert len(revisions) == len(set(revisions)), "two commits took one revision"
    assert max(revisions) == await replicas[0].revision()
    # Each task carries the revision of the commit that made it (group commit puts many
    # creates in one), and those commits were announced with exactly those revisions.
    assert {task.revision for [(task, _)] in created} == set(revisions)


async def test_a_commit_of_one_replica_reaches_the_other(
    replicas: list[PostgresTaskStore],
) -> None:
    first, second = replicas
    before = await second.data_version()
    await first.register_task_types(["bar"])

    async def noticed() -> bool:
        return await second.data_version() != before

    await eventually(noticed, message="the second replica notified of the first's commit")


async def test_task_types_pause_and_limits_round_trip(replicas: list[PostgresTaskStore]) -> None:
    store = replicas[0]
    await store.register_task_types(["foo", "bar", "foo"])
    assert await store.task_type_names() == {"foo", "bar"}
    paused = await store.set_task_type_paused("foo", True)
    assert paused.paused and paused.name == "foo"
    limited = await store.set_task_type_limits("bar", ConcurrencyLimits(3, 2.5))
    assert limited.limits == ConcurrencyLimits(3, 2.5) and not limited.paused
    listed = {t.name: t for t in await replicas[1].list_task_types()}
    assert listed["foo"].paused and listed["bar"].limits.max_running == 3
    # A bad argument fails its own caller only, not the others in the same transaction.
    results = await asyncio.gather(
        store.set_task_type_paused("nope", True),
        store.set_task_type_paused("bar", True),
        return_exceptions=True,
    )
    assert isinstance(results[0], NotFound)
    assert not isinstance(results[1], BaseException) and results[1].paused


async def test_workers_are_listed_while_fresh_and_removed(
    replicas: list[PostgresTaskStore],
) -> None:
    store = replicas[0]
    worker = WorkerRecord(
        session_id="s1", worker_id="w1", scheduler_id="sched-a", hostname="h", pid=7,
        version="1", task_types=("foo",), slots=4, connected_at=1_000, last_heartbeat_at=5_000,
    )  # fmt: skip
    await store.add_worker(worker)
    await store.set_worker_draining("s1")
    (listed,) = await replicas[1].list_workers(seen_since=4_000)
    assert listed.worker_id == "w1" and listed.draining and listed.task_types == ("foo",)
    assert listed.in_flight == 0
    assert await store.list_workers(seen_since=6_000) == []
    await store.remove_worker("s1")
    assert await store.list_workers(seen_since=0) == []


async def test_a_commit_names_its_revision_to_local_listeners(
    replicas: list[PostgresTaskStore],
) -> None:
    commits: list[Commit] = []
    replicas[0].add_commit_listener(commits.append)
    await replicas[0].register_task_types(["foo"])
    assert commits == []  # a task type is no change of tasks: the revision holds
    await replicas[0].create_tasks([spec()])
    assert [c.revision for c in commits] == [await replicas[0].revision()]
    assert not commits[0].claimed


async def test_only_commits_that_change_tasks_wake_the_other_replicas(
    replicas: list[PostgresTaskStore],
) -> None:
    """An empty claim must not wake the other replica: its dispatcher's own empty claim
    would wake this one back, for ever. A claim that leases, or a pause, does wake it."""
    first, second = replicas
    await first.register_task_types(["foo"])

    async def settled() -> bool:
        # No notification in flight: the count holds across a round trip.
        before = await second.data_version()
        await second.revision()
        return await second.data_version() == before

    await eventually(settled, message="notifications settled")
    quiet = await second.data_version()
    revision = await first.revision()
    outcome = await first.claim([claim()])
    assert outcome.leases == [[]]
    await first.revision()  # a round trip after the commit, which a NOTIFY would precede
    assert await second.data_version() == quiet
    assert await first.revision() == revision  # the counter did not move either

    [(task, _)] = await first.create_tasks([spec()])
    leased = await first.claim([claim()])
    assert [lease.task_id for lease in leased.leases[0]] == [task.id]

    async def woken() -> bool:
        return await second.data_version() > quiet

    await eventually(woken, message="the other replica woken by a create and a lease")
