from __future__ import annotations

from google.protobuf import struct_pb2

from orchestrator.v1 import task_pb2, task_service_pb2
from tests.support.cluster import Cluster
from tests.support.polling import eventually


async def test_sum2_runs_end_to_end(cluster: Cluster) -> None:
    await cluster.start_scheduler()
    await cluster.start_worker()
    tasks = cluster.tasks()
    payload = struct_pb2.Struct()
    payload.update({"first": 1, "second": 2})
    created = await tasks.CreateTask(
        task_service_pb2.CreateTaskRequest(type="sum2", payload=payload)
    )

    async def done() -> task_pb2.Task | None:
        task = await tasks.GetTask(task_service_pb2.GetTaskRequest(id=created.id))
        return task if task.state == task_pb2.TASK_STATE_SUCCEEDED else None

    task = await eventually(done, message="sum2 succeeded")
    assert dict(task.result)["sum"] == 3
