"""The Python client library against real scheduler and worker processes: every method of
``AsyncClient``, the typed errors, and the blocking ``Client``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from orchestrator.v1 import admin_service_pb2, task_pb2, task_service_pb2
from orchestrator_client import (
    TERMINAL_STATES,
    AsyncClient,
    Backoff,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TaskEvent,
    Unavailable,
    state_name,
)
from tests.support.cluster import Cluster

PENDING = task_pb2.TASK_STATE_PENDING
RUNNING = task_pb2.TASK_STATE_RUNNING
SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED
FAILED = task_pb2.TASK_STATE_FAILED
CANCELLED = task_pb2.TASK_STATE_CANCELLED
SCHEDULED = task_pb2.TASK_STATE_SCHEDULED
UPSERTED = task_service_pb2.TASK_EVENT_TYPE_UPSERTED
ACTIVE = admin_service_pb2.TASK_TYPE_STATE_ACTIVE
PAUSED = admin_service_pb2.TASK_TYPE_STATE_PAUSED
WAIT = 20.0  # seconds: the most any single wait in these tests may take


async def watch_until(
    events: AsyncIterator[TaskEvent], done: set[str], count: int
) -> list[TaskEvent]:
    """Events of ``events`` until ``count`` distinct tasks have reached a state in ``done``
    (state names), within ``WAIT`` seconds; the stream is closed afterwards."""
    seen: list[TaskEvent] = []
    finished: set[str] = set()
    async with asyncio.timeout(WAIT), contextlib.aclosing(events) as stream:
        async for event in stream:
            seen.append(event)
            if state_name(event.task.state) in done:
                finished.add(event.task.id)
            if len(finished) >= count:
                return seen
    raise AssertionError(f"the watch ended early after {len(seen)} events")


async def wait_running(client: AsyncClient, task_id: str) -> task_pb2.Task:
    """Watch the task (no polling) until it is RUNNING."""
    async with asyncio.timeout(WAIT), contextlib.aclosing(client.watch_task(task_id)) as events:
        async for event in events:
            assert event.task.state not in TERMINAL_STATES, event
            if event.task.state == RUNNING:
                return event.task
    raise AssertionError(f"the watch of {task_id} ended before it ran")


async def test_create_wait_get_batch_list_and_pages(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    worker = await cluster.start_worker()
    address = scheduler.grpc_address

    async with (
        AsyncClient(address, client_id="billing") as client,
        AsyncClient(address, client_id="shipping") as other,
    ):
        assert client.client_id == "billing" and client.target == address
        task = await client.create_task(
            "sum2",
            {"first": 1, "second": 2},
            priority=5,
            max_attempts=2,
            backoff=Backoff(initial=0.5, multiplier=3.0),
            timeout=30,
            labels={"team": "billing"},
            idempotency_key="order-1",
        )
        assert task.type == "sum2" and task.client == "billing"
        assert task.priority == 5 and task.max_attempts == 2
        assert task.timeout.seconds == 30
        assert task.backoff.initial.ToMilliseconds() == 500 and task.backoff.multiplier == 3.0
        assert dict(task.labels) == {"team": "billing"}
        repeated = await client.create_task(
            "sum2", {"first": 7, "second": 7}, idempotency_key="order-1"
        )
        assert repeated.id == task.id  # the first task, not a new one
        assert dict(repeated.payload) == {"first": 1, "second": 2}  # its payload, not ours
        assert dict(task.payload) == {"first": 1, "second": 2}

        done = await client.wait_for_task(task.id, timeout=WAIT)
        assert done.state == SUCCEEDED
        assert dict(done.result) == {"sum": 3}
        got = await client.get_task(task.id)
        assert got.result == done.result and got.client == "billing"
        (attempt,) = got.attempt_history
        assert attempt.worker_id == worker.name
        assert attempt.outcome == task_pb2.ATTEMPT_OUTCOME_SUCCEEDED

        later = await client.create_task("sum2", {"first": 0, "second": 0}, delay=30)
        assert later.state == SCHEDULED
        due = later.run_at.ToDatetime(tzinfo=dt.UTC) - later.created_at.ToDatetime(tzinfo=dt.UTC)
        assert dt.timedelta(seconds=29) < due <= dt.timedelta(seconds=30.1)

        batch = await client.batch_create_tasks(
            [
                *({"type": "sum2", "payload": {"first": i, "second": 100}} for i in range(5)),
                task_service_pb2.CreateTaskRequest(type="surprise"),
            ]
        )
        assert [t.type for t in batch.tasks] == ["sum2"] * 5 + ["surprise"]
        assert all(t.client == "billing" for t in batch.tasks)
        for made in batch.tasks:
            assert (await client.wait_for_task(made.id, timeout=WAIT)).state == SUCCEEDED
        shipped = await other.create_task("mult3", {"first": 2, "second": 3, "third": 4})
        assert shipped.client == "shipping"
        assert dict((await other.wait_for_task(shipped.id, timeout=WAIT)).result) == {"product": 24}

        # `client` is the caller's identity, and a filter.
        mine = await client.list_tasks(client="billing")
        assert {t.id for t in mine.tasks} == {task.id, later.id, *(t.id for t in batch.tasks)}
        theirs = await client.list_tasks(client="shipping")
        assert [t.id for t in theirs.tasks] == [shipped.id]
        succeeded_sums = await client.list_tasks(states=["succeeded"], types=["sum2"])
        assert {t.id for t in succeeded_sums.tasks} == {task.id, *(t.id for t in batch.tasks[:5])}
        assert succeeded_sums.revision > 0
        labelled = await client.list_tasks(labels={"team": "billing"}, view=task_pb2.TASK_VIEW_FULL)
        assert [t.id for t in labelled.tasks] == [task.id]
        assert dict(labelled.tasks[0].payload) == {"first": 1, "second": 2}
        scheduled = await client.list_tasks(states=[SCHEDULED, "pending"])
        assert [t.id for t in scheduled.tasks] == [later.id]

        # Pages of two: iter_tasks follows next_page_token to the end.
        first_page = await client.list_tasks(page_size=2)
        assert len(first_page.tasks) == 2 and first_page.next_page_token
        second_page = await client.list_tasks(page_size=2, page_token=first_page.next_page_token)
        assert {t.id for t in first_page.tasks}.isdisjoint(t.id for t in second_page.tasks)
        everything = [t.id async for t in client.iter_tasks(page_size=2)]
        assert len(everything) == 9 and len(set(everything)) == 9  # five pages
        assert everything == sorted(everything, reverse=True)  # newest first
        oldest_first = [
            t.id async for t in client.iter_tasks(page_size=4, order_by="created_at asc")
        ]
        assert oldest_first == everything[::-1]
        filtered = [t.id async for t in client.iter_tasks(types=["sum2"], page_size=2)]
        assert len(filtered) == 7

        types = await client.list_task_types()
        by_name = {t.name: t for t in types.task_types}
        assert by_name["sum2"].counts.succeeded == 6 and by_name["sum2"].counts.scheduled == 1
        assert by_name["mult3"].counts.succeeded == 1
        assert by_name["sum2"].state == ACTIVE and by_name["sum2"].connected_workers == 1
        workers = await client.list_workers()
        (shown,) = workers.workers
        assert shown.id == worker.name and shown.pid == worker.pid
        assert "sum2" in shown.task_types and shown.slots > 0
        stats = await client.get_stats()
        assert stats.totals.succeeded == 8 and stats.totals.scheduled == 1
        assert {s.type: s.counts.succeeded for s in stats.by_type}["surprise"] == 1
        assert stats.connected_workers == 1 and stats.finished_last_minute == 8

    # Leaving the block closed the channel; the client opens a new one when used again.
    assert (await client.get_task(task.id)).id == task.id
    await client.aclose()


async def test_watch_tasks_from_a_listed_revision_and_watch_task(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()

    async with AsyncClient(scheduler.grpc_address) as client:
        warmup = await client.create_task("sum2", {"first": 0, "second": 0})
        await client.wait_for_task(warmup.id, timeout=WAIT)
        since = (await client.list_tasks()).revision
        assert since > 0

        # Changes made after the listing and before the watch opens are not missed ...
        batch = await client.batch_create_tasks(
            [
                {"type": "sum2", "payload": {"first": 1, "second": 1}, "labels": {"w": "1"}},
                {"type": "mult3", "payload": {"first": 1, "second": 1, "third": 1}},
                {"type": "sum2", "payload": {"first": 2, "second": 2}, "labels": {"w": "1"}},
            ]
        )
        for made in batch.tasks:
            await client.wait_for_task(made.id, timeout=WAIT)
        watched = client.watch_tasks(
            types=["sum2"], since_revision=since, view=task_pb2.TASK_VIEW_FULL
        )
        replayed = await watch_until(watched, {"SUCCEEDED"}, 2)
        sums = {batch.tasks[0].id, batch.tasks[2].id}
        assert {e.task.id for e in replayed} == sums
        assert all(e.type == UPSERTED and e.task.type == "sum2" for e in replayed)
        assert all(e.revision > since for e in replayed)
        revisions = [e.revision for e in replayed]
        assert revisions == sorted(revisions)
        final = {e.task.id: e.task for e in replayed}
        assert dict(final[batch.tasks[0].id].result) == {"sum": 2}  # FULL view

        # ... and a live watch sees what happens after it opened.
        since = (await client.list_tasks()).revision
        live = asyncio.create_task(
            watch_until(
                client.watch_tasks(labels={"w": "2"}, since_revision=since), {"SUCCEEDED"}, 1
            )
        )
        fresh = await client.create_task("sum2", {"first": 5, "second": 5}, labels={"w": "2"})
        await client.create_task("sum2", {"first": 6, "second": 6}, labels={"w": "3"})
        events = await live
        assert {e.task.id for e in events} == {fresh.id}
        assert events[-1].task.state == SUCCEEDED
        assert not events[-1].task.HasField("result")  # BASIC view by default

        # watch_task: the task now, then its changes, ending by itself once terminal.
        slow = await client.create_task("foo", {"seconds": 1})
        changes = [event async for event in client.watch_task(slow.id)]
        assert len(changes) >= 2, changes  # the watch opens well within the task's second
        assert all(e.task.id == slow.id for e in changes)
        assert changes[0].task.state in {PENDING, RUNNING}
        assert changes[-1].task.state == SUCCEEDED
        assert all(e.task.state not in TERMINAL_STATES for e in changes[:-1])
        assert changes[-1].task.attempt_history[0].outcome == task_pb2.ATTEMPT_OUTCOME_SUCCEEDED


async def test_cancel_retry_delete_pause_and_typed_errors(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()

    async with AsyncClient(scheduler.grpc_address, client_id="ops") as client:
        long = await client.create_task("foo", {"seconds": 60}, labels={"suite": "x"})
        await wait_running(client, long.id)
        cancelled = await client.cancel_task(long.id)
        assert cancelled.state == CANCELLED
        assert (await client.wait_for_task(long.id, timeout=WAIT)).state == CANCELLED
        with pytest.raises(FailedPrecondition) as cancel_twice:
            await client.cancel_task(long.id)
        assert cancel_twice.value.code == grpc.StatusCode.FAILED_PRECONDITION

        retried = await client.retry_task(long.id)
        assert retried.state == PENDING and retried.attempts == 0
        await wait_running(client, long.id)
        # A waiter on a task that gets deleted hears NotFound rather than waiting forever.
        waiter = asyncio.create_task(client.wait_for_task(long.id, timeout=WAIT))
        await client.delete_task(long.id)
        with pytest.raises(NotFound):
            await waiter
        with pytest.raises(NotFound) as missing:
            await client.get_task(long.id)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert long.id in missing.value.details
        for call in (client.cancel_task, client.retry_task, client.delete_task):
            with pytest.raises(NotFound):
                await call(long.id)

        # Pause: a task of the type stays PENDING (so it cannot be retried) until resumed.
        paused = await client.pause_task_type("sum2")
        assert paused.name == "sum2" and paused.state == PAUSED
        held = await client.create_task("sum2", {"first": 4, "second": 4})
        other = await client.create_task("mult3", {"first": 1, "second": 2, "third": 2})
        assert (await client.wait_for_task(other.id, timeout=WAIT)).state == SUCCEEDED
        assert (await client.get_task(held.id)).state == PENDING
        types = {t.name: t for t in (await client.list_task_types()).task_types}
        assert types["sum2"].state == PAUSED and types["sum2"].counts.pending == 1
        with pytest.raises(FailedPrecondition) as not_failed:
            await client.retry_task(held.id)
        assert "PENDING" in not_failed.value.details
        resumed = await client.resume_task_type("sum2")
        assert resumed.state == ACTIVE
        assert dict((await client.wait_for_task(held.id, timeout=WAIT)).result) == {"sum": 8}

        # A FAILED task is retried with fresh attempts.
        failing = await client.create_task(
            "cpu_process", {"fail": True, "iterations": 10}, max_attempts=1
        )
        failed = await client.wait_for_task(failing.id, timeout=WAIT)
        assert failed.state == FAILED and failed.attempts == 1
        assert (await client.retry_task(failing.id)).state == PENDING
        again = await client.wait_for_task(failing.id, timeout=WAIT)
        assert again.state == FAILED and again.attempts == 1
        assert again.finished_at.ToMicroseconds() > failed.finished_at.ToMicroseconds()

        # Bad input: typed errors naming the field.
        with pytest.raises(InvalidArgument) as bad_priority:
            await client.create_task("sum2", priority=5000)
        assert "priority" in bad_priority.value.details
        with pytest.raises(InvalidArgument) as unknown_type:
            await client.create_task("sum3")
        assert "sum3" in unknown_type.value.details and "sum2" in unknown_type.value.details
        with pytest.raises(InvalidArgument) as bad_page:
            await client.list_tasks(page_size=-1)
        assert "page_size" in bad_page.value.details
        with pytest.raises(InvalidArgument) as bad_batch:
            await client.batch_create_tasks(
                [{"type": "sum2"}, {"type": "sum2", "max_attempts": 500}]
            )
        assert "tasks[1].max_attempts" in bad_batch.value.details
        with pytest.raises(InvalidArgument) as bad_id:
            await client.get_task("not-an-id")
        assert "id" in bad_id.value.details
        with pytest.raises(NotFound):
            await client.pause_task_type("never_seen")
        with pytest.raises(ValueError, match="unknown task state"):
            await client.list_tasks(states=["sleeping"])

        # delete_tasks: by filter, and everything only when confirmed.
        for i in range(3):
            await client.create_task("sum2", {"first": i, "second": 0}, labels={"suite": "bulk"})
        with pytest.raises(ValueError, match="confirm_all"):
            await client.delete_tasks()
        assert await client.delete_tasks(labels={"suite": "bulk"}) == 3
        assert [t async for t in client.iter_tasks(labels={"suite": "bulk"})] == []
        remaining = len((await client.list_tasks()).tasks)
        assert remaining == 3  # held, other, failing
        assert await client.delete_tasks(confirm_all=True) == remaining
        assert len((await client.list_tasks()).tasks) == 0


async def test_blocking_client_create_and_wait(cluster: Cluster) -> None:
    scheduler = await cluster.start_scheduler()
    await cluster.start_worker()
    address = scheduler.grpc_address

    def blocking_session() -> tuple[task_pb2.Task, task_pb2.Task, list[str]]:
        with Client(address, client_id="sync-caller") as client:
            created = client.create_task("sum2", {"first": 40, "second": 2})
            done = client.wait_for_task(created.id, timeout=WAIT)
            listed = [t.id for t in client.iter_tasks(client="sync-caller")]
            return created, done, listed

    created, done, listed = await asyncio.to_thread(blocking_session)
    assert created.client == "sync-caller"
    assert done.id == created.id and done.state == SUCCEEDED
    assert dict(done.result) == {"sum": 42}
    assert listed == [created.id]


async def test_unreachable_scheduler_is_unavailable_after_retries() -> None:
    # A port bound but not listening: connections are refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with AsyncClient(f"127.0.0.1:{port}", timeout=2, retries=1) as client:
            with pytest.raises(Unavailable) as unreachable:
                await client.get_stats()
    assert unreachable.value.code == grpc.StatusCode.UNAVAILABLE
