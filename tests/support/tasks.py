"""Small helpers over the raw TaskService stub."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf import struct_pb2

from orchestrator.v1 import task_pb2, task_service_pb2

from .polling import eventually

if TYPE_CHECKING:  # the async stub class exists only in the generated .pyi file
    from orchestrator.v1.task_service_pb2_grpc import TaskServiceAsyncStub

TERMINAL = (
    task_pb2.TASK_STATE_SUCCEEDED,
    task_pb2.TASK_STATE_FAILED,
    task_pb2.TASK_STATE_CANCELLED,
)


def request(
    type: str, payload: dict[str, Any] | None = None, **fields: Any
) -> task_service_pb2.CreateTaskRequest:
    message = task_service_pb2.CreateTaskRequest(type=type, **fields)
    if payload:
        struct = struct_pb2.Struct()
        struct.update(payload)
        message.payload.CopyFrom(struct)
    return message


async def wait_terminal(
    stub: TaskServiceAsyncStub,
    task_id: str,
    timeout: float = 20.0,  # noqa: ASYNC109 - passed on to eventually()
) -> task_pb2.Task:
    async def finished() -> task_pb2.Task | None:
        task = await stub.GetTask(task_service_pb2.GetTaskRequest(id=task_id))
        return task if task.state in TERMINAL else None

    return await eventually(finished, timeout=timeout, message=f"task {task_id} finished")


def micros(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000
