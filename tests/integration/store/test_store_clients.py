"""What clients rely on, against the real SQLite store: idempotency retention, the result
cache with single flight, run-now, progress and recurring schedules (exactly once across
two store instances on one file, as two scheduler processes would have)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from scheduler_service.domain.errors import AlreadyExists, FailedPrecondition, NotFound
from scheduler_service.domain.explain import ReasonCode, explain
from scheduler_service.domain.model import (
    AttemptEnd,
    AttemptOutcome,
    ProgressUpdate,
    TaskState,
)
from scheduler_service.domain.schedules import CatchUp, ScheduleSpec
from scheduler_service.store.sqlite.store import SqliteOptions, SqliteTaskStore
from tests.integration.store.test_store_contract import claim, spec, take
from tests.support.clock import ManualClock

S = 1_000_000


async def test_idempotency_keys_expire_after_the_retention(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = SqliteTaskStore(
        str(tmp_path / "r.db"), SqliteOptions(clock=clock, idempotency_retention=10 * S)
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


async def test_cached_create_reuses_a_succeeded_result(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    [(original, _)] = await store.create_tasks([spec(cache=True)])
    [[lease]] = await take(store, claim())
    await store.end_attempts([AttemptEnd(lease.lease_id, AttemptOutcome.SUCCEEDED, '{"r":7}')])
    [(copy, created)] = await store.create_tasks([spec(cache=True)])
    assert created and copy.id != original.id
    assert copy.state == TaskState.SUCCEEDED and copy.result_json == '{"r":7}'
    assert copy.cached and copy.cached_from == original.id
    # A different payload is not identical; an old result is not reused past max age.
    [(other, _)] = await store.create_tasks([spec(cache=True, payload_json='{"n":2}')])
    assert other.state == TaskState.PENDING and not other.cached
    clock.advance(30)
    [(stale, _)] = await store.create_tasks([spec(cache=True, cache_max_age=10 * S)])
    assert stale.state == TaskState.PENDING and not stale.cached
    # A task without cache never reuses.
    [(plain, _)] = await store.create_tasks([spec()])
    assert not plain.cached


async def test_identical_creates_join_the_running_task(store: SqliteTaskStore) -> None:
    [(leader, _)] = await store.create_tasks([spec(cache=True)])
    [(a, _), (b, _)] = await store.create_tasks([spec(cache=True), spec(cache=True)])
    assert a.state == b.state == TaskState.FOLLOWING and a.cached_from == leader.id
    leases = await take(store, claim(limit=10))
    assert [x.task_id for x in leases[0]] == [leader.id]  # followers never run
    await store.end_attempts(
        [AttemptEnd(leases[0][0].lease_id, AttemptOutcome.SUCCEEDED, '{"r":1}')]
    )
    for follower in (a, b):
        done = await store.get_task(follower.id)
        assert done is not None and done.state == TaskState.SUCCEEDED
        assert done.result_json == '{"r":1}' and done.cached


async def test_followers_fail_with_their_leader(store: SqliteTaskStore) -> None:
    [(leader, _)] = await store.create_tasks([spec(cache=True, max_attempts=1)])
    [(follower, _)] = await store.create_tasks([spec(cache=True)])
    [[lease]] = await take(store, claim())
    await store.end_attempts([AttemptEnd(lease.lease_id, AttemptOutcome.FAILED, error="boom")])
    done = await store.get_task(follower.id)
    assert done is not None and done.state == TaskState.FAILED
    assert leader.id in done.error and "boom" in done.error


async def test_a_cancelled_leader_hands_over_to_its_first_follower(
    store: SqliteTaskStore,
) -> None:
    [(leader, _)] = await store.create_tasks([spec(cache=True)])
    [(first, _), (second, _)] = await store.create_tasks([spec(cache=True), spec(cache=True)])
    await store.cancel_task(leader.id)
    heir = await store.get_task(first.id)
    other = await store.get_task(second.id)
    assert heir is not None and heir.state == TaskState.PENDING and not heir.cached
    assert other is not None and other.cached_from == first.id
    [[lease]] = await take(store, claim())
    assert lease.task_id == first.id


async def test_run_now_makes_a_scheduled_task_due(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    [(later, _)] = await store.create_tasks([spec(run_at=clock.now() + 3600 * S)])
    assert await take(store, claim()) == [[]]
    ran = await store.run_task(later.id)
    assert ran.due_at == clock.now() and ran.visible_state(clock.now()) == TaskState.PENDING
    [[lease]] = await take(store, claim())
    assert lease.task_id == later.id
    with pytest.raises(FailedPrecondition):
        await store.run_task(later.id)  # running now
    with pytest.raises(NotFound):
        await store.run_task("01ARZ3NDEKTSV4RRFFQ69G5FAV")


async def test_progress_is_stored_for_current_leases_only(store: SqliteTaskStore) -> None:
    [(task, _)] = await store.create_tasks([spec()])
    [[lease]] = await take(store, claim())
    before = (await store.get_task(task.id)).revision  # type: ignore[union-attr]
    await store.report_progress([ProgressUpdate(lease.lease_id, 42.0, "half", '{"rows":5}')])
    stored = await store.get_task(task.id)
    assert stored is not None and stored.progress is not None
    assert (stored.progress.percent, stored.progress.message) == (42.0, "half")
    assert stored.progress.details_json == '{"rows":5}' and stored.revision > before
    await store.report_progress([ProgressUpdate("stale", 99.0, "no", None)])
    again = await store.get_task(task.id)
    assert again is not None and again.progress == stored.progress


def schedule(schedule_id: str = "every-second", cron: str = "* * * * * *") -> ScheduleSpec:
    return ScheduleSpec(
        id=schedule_id,
        cron=cron,
        time_zone="UTC",
        template=spec(),
        catch_up=CatchUp.LATEST,
        client="ops",
    )


async def test_schedules_fire_each_slot_once(store: SqliteTaskStore, clock: ManualClock) -> None:
    created = await store.create_schedule(schedule())
    assert created.next_fire_at > clock.now()
    with pytest.raises(AlreadyExists):
        await store.create_schedule(schedule())
    assert await store.fire_due_schedules() == []
    clock.advance(1)
    [task] = await store.fire_due_schedules()
    assert task.run_at == created.next_fire_at and task.labels["schedule"] == "every-second"
    assert task.client == "ops" and task.idempotency_key.startswith("schedule:every-second:")
    assert await store.fire_due_schedules() == []  # that slot is done
    clock.advance(3)
    made = await store.fire_due_schedules()
    assert len(made) == 3  # late slots within the grace fire
    record = await store.get_schedule("every-second")
    assert record is not None and record.fired_count == 4
    paused = await store.set_schedule_paused("every-second", True)
    assert paused.paused
    clock.advance(5)
    assert await store.fire_due_schedules() == []
    resumed = await store.set_schedule_paused("every-second", False)
    assert resumed.next_fire_at > clock.now()  # no catch-up for the pause
    await store.delete_schedule("every-second")
    with pytest.raises(NotFound):
        await store.delete_schedule("every-second")


async def test_two_stores_on_one_file_fire_each_slot_once(tmp_path: Path) -> None:
    clock = ManualClock()
    path = str(tmp_path / "shared.db")
    stores = [SqliteTaskStore(path, SqliteOptions(clock=clock)) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        await stores[0].register_task_types(["foo"])
        await stores[0].create_schedule(schedule())
        fired: list[str] = []
        for _ in range(30):
            clock.advance(1)
            results = await asyncio.gather(*(s.fire_due_schedules() for s in stores))
            fired.extend(t.idempotency_key for made in results for t in made)
        assert len(fired) == 30 and len(set(fired)) == 30
    finally:
        for s in stores:
            await s.close()


async def test_schedule_template_round_trips(store: SqliteTaskStore) -> None:
    template = replace(spec(labels={"team": "ops"}, priority=3), cache=False)
    made = await store.create_schedule(replace(schedule("tpl"), template=template))
    assert made.template == template
    [listed] = await store.list_schedules(limit=10, after_id=None)
    assert listed.id == "tpl"


async def test_a_follower_is_explained_as_joined(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    [(leader, _)] = await store.create_tasks([spec(cache=True)])
    [(follower, _)] = await store.create_tasks([spec(cache=True)])
    facts = await store.explain_facts(follower.id, 0)
    assert facts is not None and facts.leader_state == TaskState.PENDING
    explanation = explain(facts, clock.now())
    [reason] = explanation.reasons
    assert reason.code == ReasonCode.JOINED and reason.blocking_task_id == leader.id
    assert "PENDING" in reason.message and leader.id in explanation.summary


async def test_the_cache_is_per_client(store: SqliteTaskStore) -> None:
    [(mine, _)] = await store.create_tasks([spec(cache=True, client="a")])
    [(theirs, _)] = await store.create_tasks([spec(cache=True, client="b")])
    assert not theirs.cached and theirs.state == TaskState.PENDING
    [(again, _)] = await store.create_tasks([spec(cache=True, client="a")])
    assert again.cached and again.cached_from == mine.id


async def test_deletions_in_the_change_feed_carry_the_client(store: SqliteTaskStore) -> None:
    [(task, _)] = await store.create_tasks([spec(client="tenant-1")])
    start = await store.revision()
    await store.delete_task(task.id)
    [change] = await store.changes_since((start, "~"), 10)
    assert change.task is None and change.client == "tenant-1" and change.type == "foo"
