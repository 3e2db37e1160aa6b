"""Which task runs when: groups, limits and explanations, against the real SQLite store."""

from __future__ import annotations

from dataclasses import replace

from scheduler_service.domain.explain import ReasonCode, explain
from scheduler_service.domain.model import (
    AttemptEnd,
    AttemptOutcome,
    ClaimRequest,
    ConcurrencyLimits,
    Lease,
    OnFailure,
    TaskRecord,
    TaskSpec,
    TaskState,
)
from scheduler_service.store.sqlite.store import SqliteTaskStore
from tests.integration.store.test_store_contract import claim, spec
from tests.support.clock import ManualClock


async def take(store: SqliteTaskStore, *requests: ClaimRequest) -> list[Lease]:
    outcome = await store.claim(list(requests) or [claim(types=("foo", "bar"), limit=100)])
    return [lease for leases in outcome.leases for lease in leases]


async def finish(
    store: SqliteTaskStore,
    leases: list[Lease],
    outcome: AttemptOutcome = AttemptOutcome.SUCCEEDED,
    error: str = "",
) -> None:
    await store.end_attempts([AttemptEnd(x.lease_id, outcome, "{}", error) for x in leases])


async def made(store: SqliteTaskStore, *specs: TaskSpec) -> list[TaskRecord]:
    return [task for task, _ in await store.create_tasks(list(specs))]


async def test_a_group_runs_one_task_at_a_time_in_creation_order(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    tasks = await made(store, *(spec(group="g", priority=p) for p in (0, 9, 5)))
    other = await made(store, spec(), spec(group="h"))
    assert [t.visible_state(clock.now()) for t in tasks] == [TaskState.PENDING] * 3
    assert [t.state for t in tasks] == [TaskState.PENDING, TaskState.WAITING, TaskState.WAITING]
    order = []
    for _ in range(3):
        leases = await take(store)
        grouped = [x for x in leases if x.task_id in {t.id for t in tasks}]
        assert len(grouped) == 1, "two tasks of one group leased at once"
        order.append(grouped[0].task_id)
        await finish(store, leases)
    assert order == [t.id for t in tasks]  # creation order, whatever the priorities
    for task in other:  # ungrouped tasks and other groups were not held back
        stored = await store.get_task(task.id)
        assert stored is not None and stored.state == TaskState.SUCCEEDED


async def test_a_failed_task_blocks_its_group_until_retried_or_deleted(
    store: SqliteTaskStore,
) -> None:
    first, second, third = await made(store, *(spec(group="g", max_attempts=1) for _ in range(3)))
    [lease] = await take(store)
    await finish(store, [lease], AttemptOutcome.FAILED, error="boom")
    assert await take(store) == []  # blocked
    await store.retry_task(first.id)
    [again] = await take(store)
    assert again.task_id == first.id
    await finish(store, [again], AttemptOutcome.FAILED, error="boom")
    await store.delete_task(first.id)  # deleting the failed task lets the group go on
    [nxt] = await take(store)
    assert nxt.task_id == second.id
    await finish(store, [nxt])
    [last] = await take(store)
    assert last.task_id == third.id


async def test_skip_lets_the_group_move_on_after_a_failure(store: SqliteTaskStore) -> None:
    first, second = await made(
        store, spec(group="g", max_attempts=1, on_failure=OnFailure.SKIP), spec(group="g")
    )
    [lease] = await take(store)
    await finish(store, [lease], AttemptOutcome.FAILED, error="boom")
    assert (await store.get_task(first.id)).state == TaskState.FAILED  # type: ignore[union-attr]
    [nxt] = await take(store)
    assert nxt.task_id == second.id


async def test_cancelling_the_active_task_releases_the_group(store: SqliteTaskStore) -> None:
    first, second = await made(store, spec(group="g"), spec(group="g"))
    await take(store)
    await store.cancel_task(first.id)
    [nxt] = await take(store)
    assert nxt.task_id == second.id


async def test_a_retried_task_waits_for_the_running_one(store: SqliteTaskStore) -> None:
    first, second, third = await made(
        store, *(spec(group="g", max_attempts=1, on_failure=OnFailure.SKIP) for _ in range(3))
    )
    [lease] = await take(store)
    await finish(store, [lease], AttemptOutcome.FAILED, error="boom")
    [running] = await take(store)
    assert running.task_id == second.id
    retried = await store.retry_task(first.id)
    assert retried.state == TaskState.WAITING  # second is still running
    assert await take(store) == []
    await finish(store, [running])
    [nxt] = await take(store)
    assert nxt.task_id == first.id  # the earlier task goes before the third
    await finish(store, [nxt])
    [last] = await take(store)
    assert last.task_id == third.id


async def test_type_max_running_is_never_exceeded(store: SqliteTaskStore) -> None:
    await made(store, *(spec() for _ in range(10)))
    await store.set_task_type_limits("foo", ConcurrencyLimits(max_running=3))
    first = await take(store, claim("a", limit=2), claim("b", limit=5))
    assert len(first) == 3
    assert await take(store) == []
    await finish(store, first[:2])
    assert len(await take(store)) == 2
    record = await store.set_task_type_limits("foo", ConcurrencyLimits())
    assert record.limits == ConcurrencyLimits()
    assert len(await take(store)) == 5


async def test_type_rate_limit_uses_a_sliding_window(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await made(store, *(spec() for _ in range(10)))
    await store.set_task_type_limits("foo", ConcurrencyLimits(max_per_second=4))
    outcome = await store.claim([claim(limit=10)])
    assert len(outcome.leases[0]) == 4
    assert outcome.retry_at == clock.now() + 1_000_000  # when the window frees up
    clock.advance(0.5)
    assert await take(store) == []
    clock.advance(0.5)
    assert len(await take(store)) == 4


async def test_slow_rate_allows_one_start_per_interval(
    store: SqliteTaskStore, clock: ManualClock
) -> None:
    await made(store, *(spec() for _ in range(3)))
    await store.set_task_type_limits("foo", ConcurrencyLimits(max_per_second=0.5))
    assert len(await take(store)) == 1
    clock.advance(1.9)
    assert await take(store) == []
    clock.advance(0.2)
    assert len(await take(store)) == 1


async def test_concurrency_key_limits_span_types(store: SqliteTaskStore) -> None:
    limits = ConcurrencyLimits(max_running=2)
    await made(
        store,
        spec(concurrency_key="acme", key_limits=limits),
        *(spec(type="bar", concurrency_key="acme") for _ in range(3)),
        *(spec(concurrency_key="other") for _ in range(3)),
    )
    leases = await take(store)
    by_key: dict[str, int] = {}
    for lease in leases:
        task = await store.get_task(lease.task_id)
        assert task is not None
        by_key[task.concurrency_key] = by_key.get(task.concurrency_key, 0) + 1
    assert by_key == {"acme": 2, "other": 3}  # other has no limits
    acme = []
    for lease in leases:
        task = await store.get_task(lease.task_id)
        if task is not None and task.concurrency_key == "acme":
            acme.append(lease)
    await finish(store, acme[:1])
    assert len(await take(store)) == 1


async def test_one_round_for_many_sessions_leaves_nothing_due_behind(
    store: SqliteTaskStore,
) -> None:
    """A dispatch round claims for every session in one transaction and stops querying a
    type once it is known to have nothing more; that shortcut must never starve a session
    that could still be served."""
    key_limits = ConcurrencyLimits(max_running=1)
    foo = await made(store, *(spec() for _ in range(3)))
    bar = await made(store, *(spec(type="bar") for _ in range(2)))
    keyed = await made(
        store, *(spec(type="baz", concurrency_key="k", key_limits=key_limits) for _ in range(2))
    )
    outcome = await store.claim(
        [
            claim("s1", types=("foo",), limit=1),  # sees 3 foo candidates, takes only 1
            claim("s2", types=("foo",), limit=5),  # so foo is not dry yet: gets the other 2
            claim("s3", types=("foo", "bar"), limit=5),  # foo is dry now; bar is not
            claim("s4", types=("bar", "baz"), limit=5),  # bar dry; baz gives 1 (key limit)
            claim("s5", types=("baz",), limit=5),  # baz's second task is held by its key
        ]
    )
    got = [{lease.task_id for lease in leases} for leases in outcome.leases]
    assert [len(ids) for ids in got] == [1, 2, 2, 1, 0], got
    assert got[0] | got[1] == {t.id for t in foo}
    assert got[2] == {t.id for t in bar}
    assert got[3] <= {t.id for t in keyed}
    # Nothing more is due within the limits: a second round leases nothing...
    assert await take(store, claim("s6", types=("foo", "bar", "baz"), limit=10)) == []
    # ...until the key frees up.
    await finish(store, [lease for lease in outcome.leases[3]])
    assert len(await take(store, claim("s6", types=("baz",), limit=10))) == 1


async def test_explain_names_the_reason(store: SqliteTaskStore, clock: ManualClock) -> None:
    head, waiting = await made(store, spec(group="g"), spec(group="g"))
    later = (await made(store, spec(run_at=clock.now() + 60_000_000)))[0]
    await store.create_tasks([replace(spec(type="bar"))])
    await store.set_task_type_paused("bar", True)
    paused = (await made(store, spec(type="bar")))[0]

    async def reasons(task_id: str) -> list[ReasonCode]:
        facts = await store.explain_facts(task_id, clock.now() - 60_000_000)
        assert facts is not None
        return [r.code for r in explain(facts, clock.now()).reasons]

    assert await reasons(waiting.id) == [ReasonCode.GROUP_BLOCKED, ReasonCode.NO_WORKER]
    facts = await store.explain_facts(waiting.id, 0)
    assert facts is not None and facts.group_active == (head.id, TaskState.PENDING)
    assert (await reasons(later.id))[0] == ReasonCode.NOT_DUE
    assert (await reasons(paused.id))[:1] == [ReasonCode.TYPE_PAUSED]
    [lease] = [x for x in await take(store) if x.task_id == head.id]
    assert await reasons(head.id) == [ReasonCode.RUNNING]
    await finish(store, [lease])
    assert await reasons(head.id) == [ReasonCode.FINISHED]
