"""The tasks part of the PostgreSQL store (issue 8), held to the SQLite store's contract.

The SQLite contract tests that exercise creating, reading, listing, deleting, cancelling,
retrying and pruning tasks are imported below, so they run here unchanged against a
PostgresTaskStore (pytest collects imported test functions with this module's fixtures).
Those that also need claims and leases join as that part is ported. The tests defined
here are PostgreSQL's own: several replicas sharing one database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from scheduler_service.domain.model import TaskFilter, TaskState
from scheduler_service.store.postgres.store import PostgresOptions, PostgresTaskStore
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
from tests.support.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(postgres_url: str, clock: ManualClock) -> AsyncIterator[PostgresTaskStore]:
    """The PostgreSQL store on a fresh database; time is the test's (as the SQLite
    fixture in conftest.py)."""
    store = PostgresTaskStore(postgres_url, PostgresOptions(clock=clock))
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
