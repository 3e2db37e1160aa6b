"""Schedules, stats and ExplainTask's facts on the PostgreSQL store (issue 8).

The SQLite contract tests for these run here unchanged, imported with this module's
``store`` fixture (a PostgresTaskStore on a fresh database, the test's clock); then what
only PostgreSQL has: scheduler replicas on one database, firing the same schedules at the
same moments, make one task per slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from scheduler_service.domain.model import TaskState
from scheduler_service.store.postgres.store import PostgresOptions, PostgresTaskStore
from tests.integration.store.test_store_clients import (
    schedule,
    test_a_follower_is_explained_as_joined,
    test_schedule_template_round_trips,
    test_schedules_fire_each_slot_once,
)
from tests.integration.store.test_store_contract import (
    spec,
    test_failures_back_off_then_fail_with_history,
)
from tests.integration.store.test_store_rules import test_explain_names_the_reason
from tests.support.clock import ManualClock

__all__ = [
    "test_a_follower_is_explained_as_joined",
    "test_explain_names_the_reason",
    "test_failures_back_off_then_fail_with_history",
    "test_schedule_template_round_trips",
    "test_schedules_fire_each_slot_once",
]


@pytest.fixture
async def store(postgres_url: str, clock: ManualClock) -> AsyncIterator[PostgresTaskStore]:
    """The PostgreSQL store on a fresh database; time is the test's (as the SQLite one)."""
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
    await asyncio.gather(*(s.open() for s in stores))
    await stores[0].register_task_types(["foo"])
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


async def test_replicas_firing_at_once_make_one_task_per_slot(
    replicas: list[PostgresTaskStore], clock: ManualClock
) -> None:
    for name in ("a", "b", "c"):
        await replicas[0].create_schedule(schedule(name))
    fired: list[str] = []
    for _ in range(15):
        clock.advance(1)
        # Every replica fires twice at the same moment: six firing transactions race.
        results = await asyncio.gather(*(s.fire_due_schedules() for s in replicas * 2))
        fired.extend(t.idempotency_key for made in results for t in made)
    assert len(fired) == 45, "three schedules, fifteen one-second slots each"
    assert len(set(fired)) == 45, "a slot fired twice"
    for name in ("a", "b", "c"):
        record = await replicas[1].get_schedule(name)
        assert record is not None and record.fired_count == 15
    listed = await replicas[2].list_schedules(limit=10, after_id="a")
    assert [s.id for s in listed] == ["b", "c"]


async def test_next_schedule_at_skips_paused_schedules(
    store: PostgresTaskStore, clock: ManualClock
) -> None:
    assert await store.next_schedule_at() is None
    every_minute = await store.create_schedule(schedule("minutely", "0 * * * * *"))
    every_second = await store.create_schedule(schedule("secondly"))
    assert await store.next_schedule_at() == every_second.next_fire_at
    await store.set_schedule_paused("secondly", True)
    assert await store.next_schedule_at() == every_minute.next_fire_at
    assert await store.get_schedule("missing") is None


async def test_stats_count_tasks_by_type_and_state(
    store: PostgresTaskStore, clock: ManualClock
) -> None:
    await store.create_tasks([spec(), spec(), spec(type="bar", run_at=clock.now() + 10**9)])
    stats = await store.stats()
    assert stats.totals == {TaskState.PENDING: 2, TaskState.SCHEDULED: 1}
    assert stats.by_type["bar"] == {TaskState.SCHEDULED: 1}
    assert (stats.retries, stats.over_retry_limit, stats.most_retried) == (0, 0, ())
    assert stats.finished_last_minute == 0 and stats.lateness == ()
    assert type(stats.retries) is int  # PostgreSQL's sum() of BIGINT is NUMERIC


async def test_explain_facts_of_a_missing_task_are_none(store: PostgresTaskStore) -> None:
    assert await store.explain_facts("no-such-task", 0) is None
