"""Retention through a real scheduler and worker: finished tasks go, unfinished ones stay."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import grpc
from google.protobuf import timestamp_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.streams import read_message
from tests.support.tasks import request

LATER = timestamp_pb2.Timestamp(seconds=int(time.time()) + 86_400)  # a day ahead
DELETED = task_service_pb2.TASK_EVENT_TYPE_DELETED


async def test_finished_tasks_disappear_after_their_retention_and_unfinished_ones_stay(
    cluster: Cluster,
) -> None:
    scheduler = await cluster.start_scheduler(
        "--retain-succeeded", "1",
        "--retain-cancelled", "1s",
        "--retain-failed", "0",  # kept forever
        "--prune-interval", "0.2",
        "--prune-batch", "2",  # several batches per round
    )  # fmt: skip
    await cluster.start_worker("--foo-seconds", "60")
    tasks = cluster.tasks()
    # Watching from before the creates: each task's last state, then its deletion, arrive
    # in order, however soon the pruner comes (polling could miss the finished state).
    scheduled = (await tasks.CreateTask(request("sum2", run_at=LATER))).id
    before = await tasks.ListTasks(task_service_pb2.ListTasksRequest())
    assert before.revision > 0  # 0 would mean "from now on", racing the creates below
    watch = tasks.WatchTasks(task_service_pb2.WatchTasksRequest(since_revision=before.revision))
    succeeded = [
        (await tasks.CreateTask(request("sum2", {"first": i, "second": 1}))).id for i in range(5)
    ]
    failed = (await tasks.CreateTask(request("sum2", {"first": "x"}, max_attempts=1))).id
    cancelled = (await tasks.CreateTask(request("sum2", run_at=LATER))).id
    await tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=cancelled))
    running = (await tasks.CreateTask(request("foo"))).id

    expected_end = {task_id: task_pb2.TASK_STATE_SUCCEEDED for task_id in succeeded}
    expected_end[cancelled] = task_pb2.TASK_STATE_CANCELLED
    last_state: dict[str, int] = {}
    deleted_after: dict[str, int] = {}

    async def collect() -> None:
        while set(deleted_after) != set(expected_end):
            event = await read_message(watch, task_service_pb2.TaskEvent)
            if event.type == DELETED:
                assert event.task.id in expected_end, f"{event.task.id} pruned"
                deleted_after[event.task.id] = last_state[event.task.id]
            else:
                last_state[event.task.id] = event.task.state

    await asyncio.wait_for(collect(), 30)
    watch.cancel()
    assert deleted_after == expected_end  # each went only once it had finished

    for task_id in expected_end:
        try:
            await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task_id))
            raise AssertionError(f"{task_id} still there")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND

    async def state(task_id: str) -> int:
        return (await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task_id))).state

    assert await state(failed) == task_pb2.TASK_STATE_FAILED
    assert await state(scheduled) == task_pb2.TASK_STATE_SCHEDULED
    assert await state(running) == task_pb2.TASK_STATE_RUNNING
    listed = await tasks.ListTasks(task_service_pb2.ListTasksRequest(page_size=100))
    assert {t.id for t in listed.tasks} == {failed, scheduled, running}

    text = await asyncio.to_thread(scrape, f"http://{scheduler.http_address}/metrics")
    assert "orchestrator_tasks_pruned_total 6.0" in text


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())
