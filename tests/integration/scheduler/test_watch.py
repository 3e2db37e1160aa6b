"""WatchTask and WatchTasks against the real scheduler, driven by a scripted worker."""

from __future__ import annotations

import asyncio

import grpc

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.integration.scheduler.conftest import InProcess
from tests.integration.scheduler.test_worker_stream import ScriptedWorker, create
from tests.support.polling import eventually
from tests.support.streams import read_message


async def test_watch_task_streams_states_until_terminal(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1)
    stream = scheduler.tasks.WatchTask(task_service_pb2.WatchTaskRequest(id=task.id))
    first = await read_message(stream, task_service_pb2.TaskEvent)
    assert first.task.state == task_pb2.TASK_STATE_PENDING and first.revision == task.revision
    worker = ScriptedWorker(scheduler, slots=1)
    await worker.welcome()
    await eventually(lambda: worker.leases, message="lease")
    running = await read_message(stream, task_service_pb2.TaskEvent)
    assert running.task.state == task_pb2.TASK_STATE_RUNNING and running.revision > first.revision
    worker.succeed(worker.leases[0], b'{"done": 1}')
    final = await read_message(stream, task_service_pb2.TaskEvent)
    assert final.task.state == task_pb2.TASK_STATE_SUCCEEDED
    assert dict(final.task.result) == {"done": 1}
    assert len(final.task.attempt_history) == 1
    assert await stream.read() is grpc.aio.EOF  # the stream ends at the terminal state
    await worker.close()


async def test_watch_of_a_finished_task_answers_once_and_ends(scheduler: InProcess) -> None:
    [task] = await create(scheduler, 1)
    await scheduler.tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=task.id))
    events = [
        e async for e in scheduler.tasks.WatchTask(task_service_pb2.WatchTaskRequest(id=task.id))
    ]
    assert [e.task.state for e in events] == [task_pb2.TASK_STATE_CANCELLED]


async def test_list_then_watch_from_its_revision_misses_nothing(scheduler: InProcess) -> None:
    await create(scheduler, 3)
    listing = await scheduler.tasks.ListTasks(task_service_pb2.ListTasksRequest())
    assert len(listing.tasks) == 3
    # Changes made after the list, before the watch starts:
    later = await create(scheduler, 2)
    await scheduler.tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=listing.tasks[0].id))
    stream = scheduler.tasks.WatchTasks(
        task_service_pb2.WatchTasksRequest(since_revision=listing.revision)
    )
    events = [await read_message(stream, task_service_pb2.TaskEvent) for _ in range(3)]
    upserted = [e.task.id for e in events if e.type == task_service_pb2.TASK_EVENT_TYPE_UPSERTED]
    deleted = [e.task.id for e in events if e.type == task_service_pb2.TASK_EVENT_TYPE_DELETED]
    assert sorted(upserted) == sorted(t.id for t in later)
    assert deleted == [listing.tasks[0].id]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and min(revisions) > listing.revision
    # Then live changes, filtered: only sum2 tasks.
    stream.cancel()
    feed = scheduler.app.feed
    await eventually(lambda: not feed._subscribers, message="first watcher gone")
    typed = scheduler.tasks.WatchTasks(task_service_pb2.WatchTasksRequest(types=["sum2"]))
    await eventually(lambda: len(feed._subscribers) == 1, message="typed watcher subscribed")
    await create(scheduler, 1)  # a foo task: must not show
    sum2 = await scheduler.tasks.CreateTask(task_service_pb2.CreateTaskRequest(type="sum2"))
    event = await asyncio.wait_for(read_message(typed, task_service_pb2.TaskEvent), 5)
    assert event.task.id == sum2.id and event.task.type == "sum2"
    assert not event.task.HasField("payload")  # BASIC view by default
    typed.cancel()


async def test_many_watchers_share_one_feed(scheduler: InProcess) -> None:
    streams = [scheduler.tasks.WatchTasks(task_service_pb2.WatchTasksRequest()) for _ in range(50)]
    await eventually(
        lambda: len(scheduler.app.feed._subscribers) == 50, message="50 watchers subscribed"
    )
    [task] = await create(scheduler, 1)
    events = await asyncio.gather(
        *(asyncio.wait_for(read_message(s, task_service_pb2.TaskEvent), 5) for s in streams)
    )
    assert {e.task.id for e in events} == {task.id}
    for s in streams:
        s.cancel()


async def test_a_watch_from_before_pruned_deletions_is_refused_not_incomplete(
    scheduler: InProcess,
) -> None:
    tasks = await create(scheduler, 2)
    start = (await scheduler.tasks.ListTasks(task_service_pb2.ListTasksRequest())).revision
    await scheduler.tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=tasks[0].id))
    after_delete = (await scheduler.tasks.ListTasks(task_service_pb2.ListTasksRequest())).revision
    # Retention drops the deletion record (any older than 1 µs).
    assert await scheduler.app.store.prune_tombstones(1, 100) == 1

    old = scheduler.tasks.WatchTasks(task_service_pb2.WatchTasksRequest(since_revision=start))
    try:
        await read_message(old, task_service_pb2.TaskEvent)
        raise AssertionError("a watch from before a pruned deletion was served")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "since_revision" in (error.details() or "")

    # From the revision of a listing made after the pruned deletion, nothing is missing.
    fresh = scheduler.tasks.WatchTasks(
        task_service_pb2.WatchTasksRequest(since_revision=after_delete)
    )
    await scheduler.tasks.DeleteTask(task_service_pb2.DeleteTaskRequest(id=tasks[1].id))
    event = await asyncio.wait_for(read_message(fresh, task_service_pb2.TaskEvent), 5)
    assert event.type == task_service_pb2.TASK_EVENT_TYPE_DELETED
    assert event.task.id == tasks[1].id
    fresh.cancel()
