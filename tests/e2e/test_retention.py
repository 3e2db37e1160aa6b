"""Retention through a real scheduler and worker: finished tasks go, unfinished ones stay."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from functools import partial

import grpc
from google.protobuf import timestamp_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually
from tests.support.tasks import request, wait_terminal

LATER = timestamp_pb2.Timestamp(seconds=int(time.time()) + 86_400)  # a day ahead


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
    succeeded = [
        (await tasks.CreateTask(request("sum2", {"first": i, "second": 1}))).id for i in range(5)
    ]
    failed = (await tasks.CreateTask(request("sum2", {"first": "x"}, max_attempts=1))).id
    scheduled = (await tasks.CreateTask(request("sum2", run_at=LATER))).id
    cancelled = (await tasks.CreateTask(request("sum2", run_at=LATER))).id
    await tasks.CancelTask(task_service_pb2.CancelTaskRequest(id=cancelled))
    running = (await tasks.CreateTask(request("foo"))).id
    for task_id in (*succeeded, failed):
        await wait_terminal(tasks, task_id)
    assert (await wait_terminal(tasks, failed)).state == task_pb2.TASK_STATE_FAILED

    async def gone(task_id: str) -> bool:
        try:
            await tasks.GetTask(task_service_pb2.GetTaskRequest(id=task_id))
        except grpc.aio.AioRpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
        return False

    for task_id in (*succeeded, cancelled):
        await eventually(partial(gone, task_id), timeout=15, message=f"{task_id} pruned")

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
